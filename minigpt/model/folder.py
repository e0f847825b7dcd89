"""Portable model folders: `model.safetensors` + `config.json` + `tokenizer.json`.

Every stage writes one; the next stage's `init_from`, `evaluate.py`, the chat CLI and the Hugging Face
export all read the same folder. Each file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer, load_tokenizer
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"


def save_model_folder(folder: str | Path, model: Transformer, tokenizer: Tokenizer | None) -> Path:
    """Write the model's weights, its config and (if given) its tokenizer into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # save_model de-duplicates tied tensors (the shared embedding / LM-head matrix is stored once).
    atomic_write(folder / WEIGHTS, lambda tmp: save_model(model, str(tmp)))
    model.config.save(folder / CONFIG)
    if tokenizer is not None:
        tokenizer.save(folder / TOKENIZER)
    return folder


def resolve_model_folder(path: str | Path) -> Path:
    """Accept a model folder or a run folder (whose `model/` subfolder holds the model)."""
    path = Path(path).expanduser()
    for candidate in (path, path / "model"):
        if (candidate / WEIGHTS).exists() and (candidate / CONFIG).exists():
            return candidate
    raise ConfigError(
        f"{path} is not a model folder (no {WEIGHTS} + {CONFIG} in it or in its model/ subfolder); "
        "pass the folder a finished run wrote, e.g. outputs/<task_name>/<date>_<time>/model."
    )


def load_model_folder(path: str | Path, map_location: str = "cpu") -> tuple[Transformer, Tokenizer | None]:
    """Rebuild the model (weights loaded) and its tokenizer from a model or run folder."""
    folder = resolve_model_folder(path)
    model = Transformer(ModelConfig.load(folder / CONFIG))
    load_model(model, str(folder / WEIGHTS), device=map_location)
    tokenizer = load_tokenizer(folder) if (folder / TOKENIZER).exists() else None
    return model.to(torch.device(map_location)), tokenizer
