"""How a quantized model lies in an ordinary model folder: safetensors of codes and scales, the method in config.json.

`config.json` records `extra.quantization = {method, group_size, layers}`; `model.safetensors` holds the
float tensors as usual and, for each quantized layer `L`, the plain tensors its weight is made of under
`L.weight.<part>` (torchao: `qdata`, `scale`, `zero_point`; NF4: its packed codes and double-quantized
scales; `torch.ao`: `codes`, `scale`, `zero_point`, `bias`). int4 codes, which torchao keeps one per byte on
CPU, are packed two per byte on disk (`reference.pack_int4`). Everything is a plain tensor, so safetensors
holds every method: torchao's tensor subclasses and `torch.ao`'s packed parameters (a C++ object) could only
be pickled, which neither loads without running code nor survives a library upgrade.

Loading builds the model, quantizes its (random) weights with the same method to get layers of the right
kind and shapes, then overwrites their tensors with the saved ones: the result is exactly the saved model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

from minigpt.compress.methods import inner_tensors, quantize_model, set_inner_tensors
from minigpt.compress.reference import pack_int4, unpack_int4
from minigpt.model.transformer import Transformer
from minigpt.utils.errors import DataError
from minigpt.utils.io import atomic_write


def _parts_key(layer: str, part: str) -> str:
    return f"{layer}.weight.{part}"


def _is_quantized_key(key: str, info: dict[str, Any]) -> bool:
    """A state-dict key the quantized layers own: their weight (a `torch.ao` layer: every tensor it has)."""
    whole_layer = info["method"] == "torch_dynamic"  # its bias lives inside the packed parameters
    return any(key == f"{layer}.weight" or (whole_layer and key.startswith(f"{layer}.")) for layer in info["layers"])


def save_quantized_weights(path: Path, model: Transformer) -> None:
    """Write `model.safetensors` of a quantized model (see the module docstring)."""
    info: dict[str, Any] = model.config.extra["quantization"]
    layers = info["layers"]
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not _is_quantized_key(k, info)}
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)  # the tied head is the embedding: stored once
    for layer in layers:
        for part, tensor in inner_tensors(model.get_submodule(layer)).items():
            if info["method"] == "int4_weight_only" and part == "qdata":
                tensor = pack_int4(tensor)
            state[_parts_key(layer, part)] = tensor.detach().contiguous()
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))


def load_quantized_weights(model: Transformer, path: Path) -> None:
    """Load `path` (written by `save_quantized_weights`) into a freshly built `model` of the same config."""
    info: dict[str, Any] = model.config.extra["quantization"]
    saved = load_file(str(path))
    plain = {k: v for k, v in saved.items() if not any(k.startswith(f"{x}.weight.") for x in info["layers"])}
    # The float tensors first, into the float model (a `torch.ao` layer would not take a partial state) …
    missing, unexpected = model.load_state_dict(plain, strict=False)
    missing = [k for k in missing if not _is_quantized_key(k, info) and k != "lm_head.weight"]
    if missing or unexpected:
        raise DataError(path, f"does not match its config.json (missing {missing}, unexpected {unexpected}).")
    # … then the quantized layers: quantized as saved, their codes and scales overwritten with the saved ones.
    layers = quantize_model(model, info["method"], info.get("group_size", 32))
    if layers != info["layers"]:
        raise DataError(path.parent / "config.json", f"lists quantized layers {info['layers']}, not {layers}.")
    for layer in layers:
        module = model.get_submodule(layer)
        parts: dict[str, Tensor] = {}
        for part, template in inner_tensors(module).items():
            tensor = saved[_parts_key(layer, part)]
            if info["method"] == "int4_weight_only" and part == "qdata":
                tensor = unpack_int4(tensor, template.shape)
            parts[part] = tensor
        set_inner_tensors(module, parts)
    if model.config.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
