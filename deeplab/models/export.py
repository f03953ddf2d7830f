"""A trained DeepLabV3+ as a file for deployment: ONNX, TorchScript, or a ``torch.export`` ExportedProgram.

What every exported file computes is :class:`DeploymentModel`: images ``(N, 3, H, W)`` float32 RGB on the 0-255
scale in, logits ``(N, num_classes, H, W)`` float32 out, with the normalisation inside. The network in it is the
inference model of :func:`deeplab.models.fast.optimize_for_inference` (BatchNorm folded into the convolutions, no
auxiliary head), with library convolutions throughout: the shifted multiply-add path of
:class:`~deeplab.models.depthwise.DepthwiseConv2d` is an eager CPU speed-up whose slicing depends on the image size,
while a runtime optimises a plain dilated convolution itself.

Formats (``FORMATS``) and what their files accept (with ``dynamic=True``, the default):

- ``"onnx"`` (``.onnx``, through ``torch.onnx.export(..., dynamo=True)``): input ``images``, output ``logits``,
  axes named ``batch``, ``height`` and ``width``; any batch size and any height and width. For onnxruntime,
  TensorRT, OpenVINO and programs in other languages.
- ``"torchscript"`` (``.pt``, through ``torch.jit.trace``): any batch size, height and width (the trace records the
  shape arithmetic). For C++ ``libtorch``; ``torch.jit`` is deprecated in PyTorch 2.14, which warns once here.
- ``"exported-program"`` (``.pt2``, through ``torch.export.export`` and ``torch.export.save``): any batch size;
  height and width above the output stride (at least 17 at output stride 16, 9 at 8), which the program's shape
  guard checks. For ``torch.export`` tooling: AOTInductor, ExecuTorch.

With ``dynamic=False`` the ONNX and ExportedProgram files take only the example size at batch 1.
Results are meaningful for any size the network sees whole (above the output stride); pass images at the config's
test scale (``data.scale``): the files do not resize.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deeplab.choices import EXPORT_FORMATS
from deeplab.extras import require
from deeplab.models.depthwise import DepthwiseConv2d
from deeplab.models.fast import optimize_for_inference
from deeplab.models.weights import CheckpointError

FORMATS = EXPORT_FORMATS
FILE_SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}  # how a file's name ends
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2"}  # default file names
INPUT_NAME, OUTPUT_NAME = "images", "logits"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}  # of the input and the output alike
TORCHSCRIPT_DEPRECATED = (
    "TorchScript (torch.jit) is deprecated in PyTorch 2.14: prefer the exported-program or onnx format where "
    "C++ libtorch is not required"
)
Runner = Callable[[np.ndarray | torch.Tensor], torch.Tensor]


class ExportError(CheckpointError):
    """A model that cannot be exported, a file of unknown format, or an export that does not compute what the
    model does."""


class DeploymentModel(nn.Module):
    """What an exported file computes: images ``(N, 3, H, W)`` float32 RGB on the 0-255 scale -> logits
    ``(N, num_classes, H, W)`` float32, normalised inside as the training pipeline does, ``(images - mean) / std``.

    ``network`` maps normalised images to ``{"out": logits}``, as ``DeepLabV3Plus`` does; ``mean`` and ``std`` are
    the per-channel RGB values on the 0-255 scale (``deeplab.data.transforms.MEAN``, ``STD``).
    """

    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images - self.mean) / self.std)["out"]  # (N, num_classes, H, W)


def deployment_model(model: nn.Module, *, mean: Sequence[float], std: Sequence[float]) -> DeploymentModel:
    """An eval-mode :class:`DeploymentModel` around a folded copy of the trained ``model`` (left untouched), in
    contiguous memory, with every :class:`DepthwiseConv2d` turned into the ``nn.Conv2d`` it equals."""
    network = optimize_for_inference(model, channels_last=False)
    for module in list(network.modules()):
        for name, child in module.named_children():
            if isinstance(child, DepthwiseConv2d):
                setattr(module, name, _library_convolution(child))
    device = next(model.parameters()).device
    return DeploymentModel(network, mean, std).to(device).eval()


def _library_convolution(conv: DepthwiseConv2d) -> nn.Conv2d:
    """The plain ``nn.Conv2d`` with the same hyper-parameters, weights and bias as ``conv``."""
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        device=conv.weight.device,
    )
    plain.load_state_dict(conv.state_dict())
    return plain


def export_model(
    model: nn.Module, path: str | os.PathLike, fmt: str, *, example_size: tuple[int, int], dynamic: bool = True
) -> Path:
    """Write ``model`` (images ``(N, 3, H, W)`` -> logits, e.g. a :class:`DeploymentModel`) to ``path`` in format
    ``fmt`` (one of ``FORMATS``) atomically, traced on zeros of ``example_size = (H, W)`` on the model's device;
    ``dynamic`` keeps batch, height and width free where the format allows (see the module's docstring).

    The example's sides must exceed the output stride, so that no feature map of the example is 1 pixel wide.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    device = next(model.parameters()).device
    example = torch.zeros(2 if dynamic else 1, 3, *example_size, device=device)  # batch 1 would be specialised
    write = {"onnx": _write_onnx, "torchscript": _write_torchscript, "exported-program": _write_program}[fmt]
    with _atomic(Path(path)) as temporary, torch.no_grad():
        write(model.eval(), example, temporary, dynamic)
    return Path(path)


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, which some writers check), renamed over ``path`` once the body
    has written it (removed on error)."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path, dynamic: bool) -> None:
    require("onnx", "onnxscript", extra="export", purpose="ONNX files")
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        dynamic_shapes=(DYNAMIC_AXES,) if dynamic else None,  # names become the ONNX dimension names
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        verbose=False,
    )
    program.save(path, external_data=False)  # one file: the weights inside (models under 2 GB)


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, dynamic: bool) -> None:
    with _torchscript_deprecation():
        torch.jit.save(torch.jit.trace(model, (example,)), path)  # a trace follows shapes at any size


def _write_program(model: nn.Module, example: torch.Tensor, path: Path, dynamic: bool) -> None:
    axes = {axis: torch.export.Dim.DYNAMIC for axis in DYNAMIC_AXES}
    program = torch.export.export(model, (example,), dynamic_shapes=(axes,) if dynamic else None)
    torch.export.save(program, path)


@contextlib.contextmanager
def _torchscript_deprecation() -> Iterator[None]:
    """Torch's several ``torch.jit.* is deprecated`` warnings as one warning that names the alternatives."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        yield
    warnings.warn(TORCHSCRIPT_DEPRECATED, FutureWarning, stacklevel=3)  # points at the caller of the export


def format_of(path: str | os.PathLike) -> str:
    """The format of an exported file from its name: ``.onnx``, ``.pt2`` (exported-program) or ``.pt``
    (TorchScript)."""
    formats = {suffix: fmt for fmt, suffix in FILE_SUFFIXES.items()}
    if Path(path).suffix not in formats:
        raise ExportError(f"{path} is not named as an exported model: use a name ending in {', '.join(formats)}")
    return formats[Path(path).suffix]


def load_exported(path: str | os.PathLike) -> Runner:
    """A function running the exported file ``path`` (format from its name, see :func:`format_of`): images
    ``(N, 3, H, W)`` float32 RGB 0-255, numpy or torch -> logits ``(N, num_classes, H, W)``, a float32 CPU tensor.

    ONNX files run in onnxruntime on the CPU, the others in torch on the device their weights were exported on.
    """
    path = Path(path)
    fmt = format_of(path)
    if not path.is_file():
        raise ExportError(f"exported model {path} not found: check the path")
    if fmt == "onnx":
        return _onnx_runner(path)
    if fmt == "torchscript":
        with _torchscript_deprecation():
            module = torch.jit.load(path)
    else:
        module = torch.export.load(path).module()
    return _torch_runner(module)


def _onnx_runner(path: Path) -> Runner:
    require("onnxruntime", extra="export", purpose="checking ONNX files")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(images: np.ndarray | torch.Tensor) -> torch.Tensor:
        array = images.numpy(force=True) if isinstance(images, torch.Tensor) else images
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: array.astype(np.float32, copy=False)})[0])

    return run


def _torch_runner(module: nn.Module) -> Runner:
    device = next(module.parameters()).device

    def run(images: np.ndarray | torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(torch.as_tensor(images, dtype=torch.float32, device=device)).cpu()

    return run
