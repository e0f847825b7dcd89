"""Portable model folders: `model.safetensors` + `config.json` + `tokenizer.json`.

Every stage writes one; the next stage's `init_from`, `evaluate.py` and the commands (generate, chat,
the Hugging Face export, expert pruning) all read the same folder. Each file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer, load_tokenizer
from minigpt.utils.errors import ConfigError, DataError
from minigpt.utils.io import atomic_write

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"


def save_model_folder(folder: str | Path, model: Transformer, tokenizer: Tokenizer | None) -> Path:
    """Write the model's weights, its config and (if given) its tokenizer into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if model.config.extra.get("quantization"):  # codes and scales instead of float weights
        from minigpt.compress.storage import save_quantized_weights

        save_quantized_weights(folder / WEIGHTS, model)
    else:  # save_model de-duplicates tied tensors (the shared embedding / LM-head matrix is stored once)
        atomic_write(folder / WEIGHTS, lambda tmp: save_model(model, str(tmp)))
    model.config.save(folder / CONFIG)
    if tokenizer is not None:
        tokenizer.save(folder / TOKENIZER)
    return folder


def resolve_model_folder(path: str | Path, field: str | None = None) -> Path:
    """Accept a model folder or a run folder (whose `model/` subfolder holds the model).

    `field` names the option the path came from (`run`, `init_from`), so that an error can name it.
    """
    path = Path(path).expanduser()
    for candidate in (path, path / "model"):
        if (candidate / WEIGHTS).exists() and (candidate / CONFIG).exists():
            return candidate
    given = f"{field}={path}" if field else str(path)
    raise ConfigError(
        f"{given} is not a model folder (no {WEIGHTS} + {CONFIG} in it or in its model/ subfolder); "
        "pass the folder a finished run wrote, e.g. outputs/<task_name>/<date>_<time>/model "
        "(or the run folder above it)."
    )


def load_model_folder(
    path: str | Path, map_location: str = "cpu", field: str | None = None
) -> tuple[Transformer, Tokenizer | None]:
    """Rebuild the model (weights loaded) and its tokenizer from a model or run folder.

    A quantized folder (`config.extra.quantization`, written by `python -m minigpt.compress.quantize`)
    comes back quantized, with the same method (`minigpt.compress.storage`).

    A damaged `config.json` or `model.safetensors` (a copy cut short, a disk that filled up) is a
    `DataError` naming the file and where the same weights can be found again.
    """
    folder = resolve_model_folder(path, field)
    try:
        config = ModelConfig.load(folder / CONFIG)
    except json.JSONDecodeError as err:
        raise DataError(folder / CONFIG, f"is damaged ({err}); {_recovery(folder)}") from None
    model = Transformer(config)
    try:
        if config.extra.get("quantization"):
            from minigpt.compress.storage import load_quantized_weights

            load_quantized_weights(model, folder / WEIGHTS)
        else:
            load_model(model, str(folder / WEIGHTS), device=map_location)
    except SafetensorError as err:
        raise DataError(folder / WEIGHTS, f"is damaged ({err}); {_recovery(folder)}") from None
    tokenizer = load_tokenizer(folder) if (folder / TOKENIZER).exists() else None
    return model.to(torch.device(map_location)), tokenizer


def load_model_and_tokenizer(
    path: str | Path, map_location: str = "cpu", field: str = "run"
) -> tuple[Transformer, Tokenizer]:
    """`load_model_folder` for commands that read or write text: a folder without `tokenizer.json` is refused."""
    model, tokenizer = load_model_folder(path, map_location, field)
    if tokenizer is None:
        raise ConfigError(
            f"{field}={path} has no {TOKENIZER} next to its model, and this command reads or writes text; "
            "pass a model folder a training run wrote (it saves the tokenizer with the model)."
        )
    return model, tokenizer


def _recovery(folder: Path) -> str:
    """Where a damaged model folder's weights can be found again: the run's last Lightning checkpoint."""
    checkpoint = folder.parent / "checkpoints" / "last.ckpt"
    if checkpoint.exists():
        return (
            f"the run's checkpoint {checkpoint} still holds the weights: rerun its train.py command with "
            f"ckpt_path={checkpoint} to write a fresh model folder"
        )
    return "copy the folder again, or rerun the training with ckpt_path=<run>/checkpoints/last.ckpt to rewrite it"
