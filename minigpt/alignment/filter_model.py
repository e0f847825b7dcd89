"""The learned harmful-content filter: the shared trunk with a multi-label classification head.

The reward model's recipe (`minigpt.model.heads`: the trunk, a linear head read at the last real token)
with one logit per label instead of one scalar: a label per principle of the constitution (the judge
that labelled the training text) plus `injection` (a prompt that tries to talk the model out of its
rules). Trained with the per-label binary cross-entropy

    L = −(1/L) Σ_l [ y_l · log σ(z_l) + (1 − y_l) · log(1 − σ(z_l)) ],

so that a text can violate several principles at once and the filter can say *which* one fired (the
label with the largest probability above the threshold). Unlike the judges — exact rules on exact
strings — the classifier is meant to generalise from the judge-labelled text to spellings the rules
miss, which is what `minigpt.alignment.attacks` tests and adversarial training improves.

On disk: an ordinary model folder (the trunk) marked `extra.head = "harm_filter"` with the label names in
`extra.filter_labels`, plus `filter_head.safetensors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from minigpt.model.config import ModelConfig
from minigpt.model.folder import CONFIG, load_model_folder, resolve_model_folder, save_model_folder
from minigpt.model.heads import last_token_index, right_pad
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write

FILTER_HEAD = "filter_head.safetensors"
INJECTION = "injection"


class HarmClassifier(nn.Module):
    """Trunk + linear head C → len(labels), read at each row's last real token (as `ScalarHead`)."""

    def __init__(self, trunk: Transformer, labels: Sequence[str]) -> None:
        super().__init__()
        if not labels:
            raise ConfigError("HarmClassifier needs at least one label (the constitution's principle names).")
        self.trunk, self.labels = trunk, tuple(labels)
        self.head = nn.Linear(trunk.config.n_embd, len(self.labels))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """Logits (B, L) of right-padded `ids` (B, T) with `lengths` real tokens each."""
        hidden, _ = self.trunk.hidden_states(ids)
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(lengths)]
        return self.head(last)


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], block_size: int) -> tuple[Tensor, Tensor]:
    """Right-padded ids (N, T) and lengths (N,): each text's tokens after a BOS (so an empty text has one),
    cut to the model's context (a harmful end past it is not seen: the filter reads the first block)."""
    bos = tokenizer.bos_id if tokenizer.bos_id is not None else 0
    return right_pad([([bos] + tokenizer.encode(text))[:block_size] for text in texts], pad_id=0)


@torch.no_grad()
def predict(model: HarmClassifier, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """Label probabilities σ(z) (N, L) of `texts`, in eval mode."""
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    out = []
    for start in range(0, len(texts), batch_size):
        ids, lengths = encode_texts(tokenizer, texts[start : start + batch_size], model.trunk.config.block_size)
        out.append(torch.sigmoid(model(ids.to(device), lengths.to(device)).float()).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, len(model.labels))


def save_filter(folder: str | Path, model: HarmClassifier, tokenizer: Tokenizer) -> Path:
    """Write the trunk as a model folder marked `extra.head = "harm_filter"` (with the labels), and the head."""
    model.trunk.config.extra.update(head="harm_filter", filter_labels=list(model.labels))
    folder = save_model_folder(folder, model.trunk, tokenizer)
    atomic_write(Path(folder) / FILTER_HEAD, lambda tmp: save_model(model.head, str(tmp)))
    return folder


def load_filter(path: str | Path, map_location: str = "cpu") -> tuple[HarmClassifier, Tokenizer]:
    """The classifier and tokenizer of a folder `save_filter` wrote (`python -m minigpt.alignment.filter_train`)."""
    folder = resolve_model_folder(path, "filter")
    config = ModelConfig.load(folder / CONFIG)
    if config.extra.get("head") != "harm_filter" or not (folder / FILTER_HEAD).exists():
        raise ConfigError(
            f"filter={folder} is not a harm-filter folder (no extra.head='harm_filter' or no {FILTER_HEAD}); "
            "pass the model/ folder `python -m minigpt.alignment.filter_train` wrote."
        )
    trunk, tokenizer = load_model_folder(folder, map_location)
    if tokenizer is None:
        raise ConfigError(f"filter={folder} has no tokenizer.json; the filter needs its tokenizer to read text.")
    model = HarmClassifier(trunk, config.extra["filter_labels"])
    load_model(model.head, str(folder / FILTER_HEAD), device=map_location)
    return model.to(map_location).eval(), tokenizer
