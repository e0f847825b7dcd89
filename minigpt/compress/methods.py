"""The quantization methods `quantize` offers, applied in place to a model's Transformer blocks.

| method             | weights                         | activations        | runtime                   |
|--------------------|---------------------------------|--------------------|---------------------------|
| `int8_weight_only` | int8, one scale per output row  | float              | torchao `Int8Tensor`      |
| `int8_dynamic`     | int8, one scale per output row  | int8 per token     | torchao `Int8Tensor`      |
| `int4_weight_only` | int4, one scale per `group_size` | float             | torchao `IntxUnpackedToInt8Tensor` |
| `nf4`              | NF4, blocks of 64, scales in int8 | float            | torchao `NF4Tensor`       |
| `torch_dynamic`    | int8, one scale per matrix      | int8 per batch     | `torch.ao` dynamic `Linear` (classic) |

The weight math of the integer methods is `minigpt.compress.reference` (checked against torchao in the
tests). NF4 (Dettmers et al. 2023, QLoRA §3) places its 16 levels at the quantiles of a normal distribution,
so that normally distributed weights use every level equally often; each block of 64 weights has an absmax
scale, and the scales themselves are quantized to int8 in blocks of 256 ("double quantization", §3).

Only the linear layers inside the blocks are quantized. The token embedding, which the tied LM head shares,
stays float: it is a lookup table (no matmul to speed up), and the output layer is the one most sensitive to
rounding (Dettmers et al. 2022, LLM.int8() keep it in 16 bits too).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from minigpt.model.transformer import Transformer
from minigpt.utils.errors import ConfigError

# torchao tries to load its CUDA kernels at import and logs each failure on a CPU-only machine.
logging.getLogger("torchao").setLevel(logging.ERROR)

import torchao.quantization as ao  # noqa: E402

NF4_BLOCK, NF4_SCALER_BLOCK = 64, 256  # QLoRA's block sizes; torchao's NF4 copy/clone assumes them
METHODS = ("int8_weight_only", "int8_dynamic", "int4_weight_only", "nf4", "torch_dynamic")
DEFAULT_GROUP_SIZE = 32


def check_method(method: str, group_size: int = DEFAULT_GROUP_SIZE) -> None:
    """Refuse an unknown method, or a group size that is not a positive power of two."""
    if method not in METHODS:
        raise ConfigError(f"method={method} is unknown; choose one of {', '.join(METHODS)}.")
    if method == "int4_weight_only" and (group_size <= 0 or group_size & (group_size - 1)):
        raise ConfigError(f"group_size={group_size} must be a positive power of two, e.g. group_size=32.")


def block_linears(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of every linear layer inside the Transformer blocks (float or already quantized)."""
    for name, module in model.named_modules():
        if name.startswith("blocks.") and isinstance(module, nn.Linear | torch.ao.nn.quantized.dynamic.Linear):
            yield name, module


def quantizable(method: str, linear: nn.Linear, group_size: int) -> bool:
    """Whether `method` can quantize this layer's shape (NF4 needs whole scaler blocks, int4 whole groups)."""
    out_features, in_features = linear.weight.shape
    if method == "nf4":
        return (out_features * in_features) % (NF4_BLOCK * NF4_SCALER_BLOCK) == 0
    if method == "int4_weight_only":
        return in_features % group_size == 0
    return True


def _torchao_config(method: str, group_size: int) -> ao.AOBaseConfig:
    if method == "int8_weight_only":
        return ao.Int8WeightOnlyConfig(set_inductor_config=False)
    if method == "int8_dynamic":
        return ao.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    # On CPU, torchao's int4 path is the generic "intx" one: codes kept one per int8, group-wise scales.
    return ao.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=ao.PerGroup(group_size))  # type: ignore[attr-defined]


def _quantize_torch_dynamic(parent: nn.Module, child: str, linear: nn.Linear) -> None:
    """The classic eager-mode baseline: `torch.ao` dynamic quantization (deprecated upstream for torchao)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)
    setattr(parent, child, quantized[0])


def quantize_model(model: nn.Module, method: str, group_size: int = DEFAULT_GROUP_SIZE) -> list[str]:
    """Quantize the block linears of `model` in place; returns the names of the layers quantized."""
    check_method(method, group_size)
    done = []
    for name, linear in list(block_linears(model)):
        if not isinstance(linear, nn.Linear) or not quantizable(method, linear, group_size):
            continue
        parent, _, child = name.rpartition(".")
        if method == "torch_dynamic":
            _quantize_torch_dynamic(model.get_submodule(parent), child, linear)
        elif method == "nf4":
            nf4 = ao.to_nf4(linear.weight.detach(), NF4_BLOCK, NF4_SCALER_BLOCK)
            linear.weight = nn.Parameter(nf4, requires_grad=False)
        else:
            ao.quantize_(linear, _torchao_config(method, group_size))
        done.append(name)
    return done


def inner_tensors(module: nn.Module) -> dict[str, Tensor]:
    """The plain tensors a quantized layer's weight is made of (codes, scales, …), by name."""
    if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
        weight = module.weight()
        bias = module.bias()
        tensors = {"codes": weight.int_repr(), "scale": torch.tensor(weight.q_scale())}
        tensors["zero_point"] = torch.tensor(weight.q_zero_point())
        return tensors | ({"bias": bias.detach()} if bias is not None else {})
    subclass: Any = module.weight  # a torchao tensor subclass
    names, _ = subclass.__tensor_flatten__()
    return {name: getattr(subclass, name) for name in names}


def set_inner_tensors(module: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Overwrite a quantized layer's tensors with saved ones (the inverse of `inner_tensors`)."""
    if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            weight = torch._make_per_tensor_quantized_tensor(
                tensors["codes"], float(tensors["scale"]), int(tensors["zero_point"])
            )
        module.set_weight_bias(weight, tensors.get("bias"))
        return
    for name, value in tensors.items():
        getattr(module.weight, name).copy_(value)


def dequantized(weight: Tensor) -> Tensor:
    """A float copy of a torchao-quantized weight: ŵ = s·q (NF4: the level of each code times its block scale)."""
    if hasattr(weight, "get_original_weight"):  # NF4Tensor (its `dequantize` is a static helper)
        return weight.get_original_weight()
    return weight.dequantize()


def dequantize_model(model: Transformer) -> Transformer:
    """Turn every quantized block linear of `model` back into a float `nn.Linear`, in place; returns `model`.

    The float weights are the dequantized codes ŵ = s·q, not the weights before quantization: merging
    QLoRA adapters into them (`merge_lora`) gives the float model that computes what training saw.
    """
    for name, module in list(block_linears(model)):
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            weight, bias = module._packed_params._weight_bias()
            plain = nn.Linear(module.in_features, module.out_features, bias=bias is not None)
            plain.weight = nn.Parameter(weight.dequantize())
            if bias is not None:
                plain.bias = nn.Parameter(bias.detach().clone())
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, plain)
        elif isinstance(module.weight, Tensor) and type(module.weight) not in (Tensor, nn.Parameter):
            module.weight = nn.Parameter(dequantized(module.weight))
    model.config.extra.pop("quantization", None)
    return model
