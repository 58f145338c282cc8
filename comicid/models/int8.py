"""Int8 CPU inference of a model's backbone: an ONNX Runtime graph, statically quantised, mixed precision.

Why: on a 2-core AVX2 CPU (no AVX-512, no VNNI, no bf16) the fp32 EfficientNet-Lite0 backbone embeds
about 250 crops/s at 128 px; its int8 graph runs about 2.5x faster, 2.3x end to end from PNG files
(docs/BENCHMARKS.md, ``embed-speed``). Only the backbone is quantised: the colour histogram, the cut head
and the projector stay in torch, where they cost almost nothing.

Three choices, each measured on the shipped model (mean cosine of int8 to fp32 backbone features on
held-out sprites), decide whether the graph is usable at all:

* **Static "same" padding.** timm's TF-style convolutions compute their padding from the input's shape
  at run time. Exported, that arithmetic becomes graph nodes, and the quantiser puts quantise /
  dequantise pairs on it, corrupting the pad amounts: cosine 0.86, against 0.99 with the same
  fp32 convolutions and constant padding. The input size is fixed (crops are letterboxed
  to ``input_size``), so :func:`with_static_padding` swaps those convolutions for a constant
  ``ZeroPad2d`` + ``Conv2d`` before export: same weights, same outputs (tested), no shape arithmetic.
* **Mixed precision.** The first stage (stem, the first depthwise conv, and the linear bottleneck
  whose outputs span about +-33) loses too much with per-tensor 8-bit activations: mean cosine 0.77
  with the stem in int8, 0.95 with only the first depthwise conv in int8, 0.992 with all three in
  fp32 (which costs 20 % of the graph's time). :data:`FP32_LEADING_CONVS` convs stay fp32.
* **Calibration on the crops the model will see**: letterboxed drawn characters, not photos; the
  shipped graph is calibrated on the same synthetic and ``split=dev`` crops its model was trained on.

The graph lives beside its checkpoint (``model.pt`` -> ``model.int8.onnx``) and records the sha256 of
the checkpoint it was made from, so a retrained checkpoint never runs with a stale graph.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.layers import Conv2dSame
from timm.layers.padding import pad_same_arg
from torch import Tensor, nn

from comicid.errors import ModelError
from comicid.models.backbones import Backbone
from comicid.atomic import atomic_write

#: Suffix replacing a checkpoint's own: ``default.pt`` -> ``default.int8.onnx``.
INT8_SUFFIX = ".int8.onnx"
#: Leading convolutions (in graph order) kept in fp32; see the module docstring.
FP32_LEADING_CONVS = 3
GRAPH_FORMAT = "comicid-int8"
GRAPH_VERSION = "1"
#: ONNX opset of the exported graph (ONNX Runtime 1.31 quantises opset 17 Conv/Add/Clip/Pad).
OPSET = 17
_INPUT, _OUTPUT = "images", "features"


def int8_graph_path(checkpoint: str | Path) -> Path:
    """Where the int8 graph of ``checkpoint`` lives: same folder, ``<stem>.int8.onnx``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + INT8_SUFFIX)


class _StaticSameConv(nn.Sequential):
    """A TF "same" convolution for one fixed input size: constant zero padding, then an unpadded conv."""

    def __init__(self, conv: nn.Conv2d, height: int, width: int) -> None:
        pad = pad_same_arg([height, width], list(conv.weight.shape[-2:]), list(conv.stride), list(conv.dilation))
        plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                          conv.dilation, conv.groups, conv.bias is not None)
        plain.load_state_dict(conv.state_dict())
        super().__init__(nn.ZeroPad2d(pad), plain)


def with_static_padding(module: nn.Module, input_size: int) -> nn.Module:
    """A copy of ``module`` whose timm ``Conv2dSame`` layers pad by constants for ``input_size`` crops.

    The input size each such layer sees is read off one forward pass of a blank batch, so the copy is
    exact for ``(B, 3, input_size, input_size)`` inputs and only for those.
    """
    module = copy.deepcopy(module).eval()
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [layer.register_forward_pre_hook(
        lambda _layer, inputs, name=name: sizes.__setitem__(name, tuple(inputs[0].shape[-2:])))
        for name, layer in module.named_modules() if isinstance(layer, Conv2dSame)]
    with torch.inference_mode():
        module(torch.zeros(1, 3, input_size, input_size))
    for hook in hooks:
        hook.remove()
    for name, (height, width) in sizes.items():
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, _StaticSameConv(getattr(parent, child), height, width))
    return module


def quantize_backbone(backbone: Backbone, calibration: Tensor, path: str | Path, source_sha256: str,
                      fp32_leading_convs: int = FP32_LEADING_CONVS) -> Path:
    """Write the int8 ONNX graph of ``backbone`` to ``path`` (atomically); returns ``path``.

    Args:
        calibration: ``(N, 3, S, S)`` crops normalised as the backbone expects (``S = input_size``);
            activation ranges are their min/max, so they should look like the crops to be embedded.
        source_sha256: sha256 of the checkpoint the backbone comes from, recorded in the graph.
        fp32_leading_convs: convolutions kept in fp32, counted from the input.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    size = backbone.input_size
    if calibration.dim() != 4 or tuple(calibration.shape[1:]) != (3, size, size) or len(calibration) < 1:
        raise ValueError(f"calibration must be (N, 3, {size}, {size}), got {tuple(calibration.shape)}")
    batches = [calibration[i:i + 32].float().contiguous().numpy() for i in range(0, len(calibration), 32)]

    class _Batches(CalibrationDataReader):  # the reader interface quantize_static asks for
        def __init__(self) -> None:
            self._iterator = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._iterator, None)
            return None if batch is None else {_INPUT: batch}

    exportable = with_static_padding(backbone, size).float().to(memory_format=torch.contiguous_format)
    with tempfile.TemporaryDirectory(prefix="comicid-int8-") as scratch:
        fp32, prepared, quantised = (Path(scratch) / name for name in ("fp32.onnx", "prep.onnx", "int8.onnx"))
        # The TorchScript-based exporter: the dynamo one needs onnxscript, and gives the same graph here.
        # Its warnings (deprecation, constant folding of the pad lists) do not concern the result, which
        # the tests and quantize_checkpoint compare with the fp32 model.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(exportable, (torch.from_numpy(batches[0][:1]),), str(fp32), dynamo=False,
                              input_names=[_INPUT], output_names=[_OUTPUT], opset_version=OPSET,
                              dynamic_axes={_INPUT: {0: "batch"}, _OUTPUT: {0: "batch"}})
        quant_pre_process(str(fp32), str(prepared))
        convs = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"]
        quantize_static(str(prepared), str(quantised), _Batches(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=convs[:fp32_leading_convs])
        graph = onnx.load(str(quantised))
    onnx.helper.set_model_props(graph, {
        "format": GRAPH_FORMAT, "version": GRAPH_VERSION, "backbone": backbone.name,
        "source_sha256": source_sha256, "input_size": str(size), "feature_dim": str(backbone.feature_dim),
        "mean": ",".join(map(str, backbone.mean)), "std": ",".join(map(str, backbone.std)),
        "fp32_leading_convs": str(fp32_leading_convs), "calibration_crops": str(len(calibration)),
    })
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:
        handle.write(graph.SerializeToString())
    return path


class Int8Backbone(Backbone):
    """A backbone that runs an int8 graph on ONNX Runtime's CPU provider (torch tensors in and out).

    Sessions are opened lazily, once per process and thread count, with as many intra-op threads as
    torch has in that process at that moment: the embedding engine's decode threads (torch at one
    thread meanwhile) share one single-threaded session, a caller with all cores gets a session with
    all of them. So the backbone can be forked or pickled (a session survives neither).
    Idle threads do not spin: spinning would take the cores from the threads decoding the next batches.
    """

    def __init__(self, path: str | Path, source_sha256: str | None = None) -> None:
        import onnx

        path = Path(path)
        data = path.read_bytes()
        try:
            props = {prop.key: prop.value for prop in onnx.load_from_string(data).metadata_props}
        except Exception as error:  # protobuf decode errors have no common public type
            raise ModelError(f"'{path}' is not a readable ONNX graph ({error})") from None
        if props.get("format") != GRAPH_FORMAT or props.get("version") != GRAPH_VERSION:
            raise ModelError(f"'{path}' is not a comicid int8 graph (version {GRAPH_VERSION})")
        if source_sha256 is not None and props.get("source_sha256") != source_sha256:
            raise ModelError(f"int8 graph '{path}' was made from another checkpoint; rebuild it with "
                             "`comicid quantize` or pass --precision fp32")
        super().__init__(props["backbone"], int(props["input_size"]), _floats(props["mean"]),
                         _floats(props["std"]), int(props["feature_dim"]))
        self.path = path
        self.sha256 = hashlib.sha256(data).hexdigest()
        self._graph = data
        self._sessions: dict[int, Any] = {}
        self._sessions_pid = -1
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_sessions"], state["_sessions_pid"] = {}, -1
        del state["_lock"]  # a lock cannot be pickled; a session survives neither pickling nor a fork
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._lock = threading.Lock()

    def _session(self) -> Any:
        """The ONNX Runtime session with as many intra-op threads as torch has in this process now;
        opened once per process and thread count.

        A session serves concurrent ``run`` calls: the engine's threads share one single-threaded
        session, each running whole batches on its own core.
        """
        threads = torch.get_num_threads()
        with self._lock:
            if self._sessions_pid != os.getpid():  # under the lock: one thread resets, none drops another's session
                self._sessions, self._sessions_pid = {}, os.getpid()
            if threads not in self._sessions:
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._sessions[threads] = onnxruntime.InferenceSession(self._graph, options,
                                                                       providers=["CPUExecutionProvider"])
        return self._sessions[threads]

    def forward(self, images: Tensor) -> Tensor:
        if images.device.type != "cpu":
            raise ModelError("an int8 graph runs on the CPU only; use --precision fp32 with --device cuda")
        pixels = np.ascontiguousarray(images.detach().float().numpy())
        return torch.from_numpy(self._session().run([_OUTPUT], {_INPUT: pixels})[0])


def _floats(text: str) -> tuple[float, float, float]:
    values: Sequence[float] = [float(value) for value in text.split(",")]
    if len(values) != 3:
        raise ModelError(f"expected three channel values, got '{text}'")
    return (values[0], values[1], values[2])
