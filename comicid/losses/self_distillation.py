"""Self-distillation loss with centring (DINO, Caron et al. 2021), as VideoClusterNet uses it.

Hand-written because pytorch-metric-learning has no self-distillation loss: its losses compare
embeddings of one network under labels or index tuples, while this loss compares a student's output
with a *different* network's (the EMA teacher's) output on a positive partner. The call shape therefore
cannot be PML's ``(embeddings, labels, indices_tuple)``; it is ``(student_logits, teacher_logits)``
where row i of both is one positive pair (two views of one crop, face and body of one instance, or two
members of one matched group).

    loss = mean_i  -softmax((t_i - c) / tau_t) . log_softmax(s_i / tau_s)

The teacher side is sharpened (small ``tau_t``) and centred by ``c``, a running mean of teacher
outputs. Sharpening alone collapses every input onto one prototype, centring alone onto the uniform
distribution; together they balance (the DINO argument). The centre is updated after each call from the
current teacher batch, outside autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfDistillationLoss(nn.Module):
    """Cross-entropy from a sharpened, centred teacher distribution to the student's.

    Args:
        out_dim: number of prototypes K (the width of both networks' logits).
        teacher_temperature: tau_t; DINO's 0.04 keeps the teacher confident.
        student_temperature: tau_s; DINO's 0.1.
        center_momentum: EMA rate of the centre; 0.9 as in DINO.
    """

    def __init__(self, out_dim: int, teacher_temperature: float = 0.04, student_temperature: float = 0.1,
                 center_momentum: float = 0.9) -> None:
        super().__init__()
        self.teacher_temperature = teacher_temperature
        self.student_temperature = student_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Mean loss over B pairs; ``student_logits`` and ``teacher_logits`` are (B, K), row i paired.

        The teacher logits are detached here, so callers may pass the teacher's raw output.
        """
        teacher_logits = teacher_logits.detach()
        teacher_probs = F.softmax((teacher_logits - self.center) / self.teacher_temperature, dim=-1)
        student_log_probs = F.log_softmax(student_logits / self.student_temperature, dim=-1)
        loss = -(teacher_probs * student_log_probs).sum(dim=-1).mean()
        self._update_center(teacher_logits)
        return loss

    @torch.no_grad()
    def _update_center(self, teacher_logits: torch.Tensor) -> None:
        batch_center = teacher_logits.mean(dim=0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
