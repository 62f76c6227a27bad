"""An int8 image encoder for CPUs: dynamic int8 quantization of the encoder's linear layers.

Every linear layer of the encoder's transformer blocks (each attention's ``qkv`` and ``proj``
projections, each MLP's ``lin1`` and ``lin2``) becomes torch's dynamically quantized linear
(``torch.ao.nn.quantized.dynamic.Linear``, the module ``torch.ao.quantization.quantize_dynamic``
swaps in): its weight is stored as int8 with one scale per output channel, and each call
quantizes its input to 8 bits with a scale measured on that input, multiplies in integers
(FBGEMM on x86, QNNPACK on ARM) and returns float32. Everything else runs in float32 as before:
the attention itself (``q k^T``, the relative-position terms, softmax, ``attn v``), LayerNorm,
GELU, the patch embedding and the neck's convolutions.

:func:`int8_image_encoder` builds a *view*, as :func:`~persam_video.model.attention
.fast_image_encoder` does: a new module tree that shares every float parameter and buffer of the
given encoder and holds int8 copies of the linear weights (made once, when the view is built; the
view does not follow later changes of the model's linear weights). The encoder it is given is
not modified.

torch marks its eager quantization API (``torch.ao.quantization``) as deprecated in favour of the
separate torchao package; in torch 2.14 it is still shipped and working, and its deprecation
warnings are silenced here, where it is used on purpose. torch builds without a quantized engine
(or a future torch without the API) make :func:`int8_image_encoder` raise
:class:`Int8Unavailable` with one line saying so.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from segment_anything.modeling.image_encoder import ImageEncoderViT

from persam_video.model.attention import shallow_view

#: The linear layers of each transformer block that are quantized, as paths from the block.
QUANTIZED_LINEARS: tuple[str, ...] = ("attn.qkv", "attn.proj", "mlp.lin1", "mlp.lin2")
#: torch's deprecation notices for its eager quantization API (regular expressions).
DEPRECATION_NOTICES: tuple[str, ...] = (
    r".*torch\.ao\.quantization is deprecated",
    r".*quantize_per_(tensor|channel).*deprecated",
)


class Int8Unavailable(ValueError):
    """This torch build (or device) cannot run the int8 encoder."""


def int8_image_encoder(encoder: ImageEncoderViT) -> ImageEncoderViT:
    """A view of SAM's image ``encoder`` whose blocks' linear layers run in int8 (CPU only).

    ``encoder`` may be the stock encoder or a view of it (such as
    :func:`~persam_video.model.attention.fast_image_encoder`'s); its attention is kept as it
    is, in float32. The view maps (B, 3, S, S) float32 images to (B, C_out, S/16, S/16) float32
    embeddings, as ``encoder`` does. Raises :class:`Int8Unavailable` when ``encoder`` is not on
    a CPU or torch has no quantized engine.
    """
    device = next(encoder.parameters()).device
    if device.type != "cpu":
        raise Int8Unavailable(
            f"int8 runs on CPUs only (torch's dynamic quantization has no {device.type} "
            "kernels); use float32, bfloat16 or float16 there"
        )
    nnqd, qconfig = _quantization_api()
    view = shallow_view(encoder)
    blocks = []
    for block in encoder.blocks:
        blocks.append(_quantized_block(block, nnqd, qconfig))
    view.blocks = torch.nn.ModuleList(blocks)
    return view


def quantized_linears(encoder: torch.nn.Module) -> list[str]:
    """Names of the dynamically quantized int8 linear layers in ``encoder``."""
    nnqd, _ = _quantization_api()
    return [name for name, module in encoder.named_modules() if isinstance(module, nnqd.Linear)]


def _quantized_block(block: torch.nn.Module, nnqd, qconfig) -> torch.nn.Module:
    """A shallow copy of ``block`` (and of the submodules on the way to each linear layer) with
    each of :data:`QUANTIZED_LINEARS` replaced by its int8 version."""
    view = shallow_view(block)
    for path in QUANTIZED_LINEARS:
        *parents, leaf = path.split(".")
        owner = view
        for name in parents:  # copy the way down, so that the assignment stays in the view
            child = shallow_view(getattr(owner, name))
            setattr(owner, name, child)
            owner = child
        linear = getattr(owner, leaf)
        source = copy.copy(linear)  # from_float reads ``qconfig`` off the module: not ours
        source.qconfig = qconfig
        with _quiet():
            setattr(owner, leaf, nnqd.Linear.from_float(source))
    return view


def _quantization_api():
    """torch's dynamic quantized ``Linear`` module class and per-channel int8 dynamic qconfig."""
    try:
        with _quiet():
            import torch.ao.nn.quantized.dynamic as nnqd
            from torch.ao.quantization import per_channel_dynamic_qconfig
    except ImportError as exc:  # a future torch without the eager API
        raise Int8Unavailable(
            f"this torch ({torch.__version__}) has no dynamic int8 "
            f"quantization ({exc}); use float32"
        ) from None
    if torch.backends.quantized.engine in (None, "none"):
        raise Int8Unavailable(
            f"this torch build ({torch.__version__}) has no quantized engine for int8; use float32"
        )
    return nnqd, per_channel_dynamic_qconfig


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch's deprecation notices for the eager quantization API (used on purpose)."""
    with warnings.catch_warnings():
        for message in DEPRECATION_NOTICES:
            warnings.filterwarnings("ignore", message=message)
        yield
