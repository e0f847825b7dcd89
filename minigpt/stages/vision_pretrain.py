"""`vision.pretrain`: classification pre-training of the image encoder before it meets the language model.

LLaVA starts from a CLIP encoder that already sees; ours starts from scratch, so its first gradients come
through a frozen (or freshly tuned) LM from a few answer tokens — a weak, noisy signal for learning what a
triangle looks like. Here the encoder first learns, as a plain classifier, the labels each image source
knows (`LabelledSource.labelled`: the digit; each scene slot's colour and shape), with one linear head per
label on the flattened token grid:

    z = flatten(g(x)) ∈ R^{N·d},   p_h = softmax(W_h z + b_h),   L = (1/H) Σ_h −log p_h[y_h]

(the heads read the whole grid, not a pooled vector, so "what is in the left slot" stays answerable).
The heads are then thrown away; the encoder keeps what it learned and, with `vision.pretrain.freeze=true`,
stays fixed for the rest of the run (LLaVA's frozen encoder).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.data.vision.example import ImageLabels, VisionSource
from minigpt.utils.errors import ConfigError
from minigpt.utils.modes import eval_mode


@dataclass
class PretrainConfig:
    """`vision.pretrain`: `steps` of AdamW at `lr` on batches of `batch_size` images per source
    (0 steps = off); `freeze` keeps the encoder fixed afterwards; `num_train` images per generated source."""

    steps: int = 0
    lr: float = 3e-3
    batch_size: int = 64
    freeze: bool = False
    num_train: int = 4000

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size <= 0 or self.lr <= 0 or self.num_train <= 0:
            raise ConfigError(
                f"vision.pretrain={self} needs steps ≥ 0 and positive lr, batch_size and num_train (e.g. steps=500)."
            )


def labelled_sources(sources: Mapping[str, VisionSource]) -> dict[str, VisionSource]:
    """The sources that can label their images; refuses data where none can."""
    found = {name: source for name, source in sources.items() if hasattr(source, "labelled")}
    if not found:
        raise ConfigError(
            f"vision.pretrain needs a data source with class labels, and {sorted(sources)} have none; "
            "use data=vision/digits, vision/shapes or vision/mix, or set vision.pretrain.steps=0."
        )
    return found


class ClassifierHeads(nn.Module):
    """One linear layer from the flattened token grid (N·d) to every head's logits, split per head."""

    def __init__(self, grid_width: int, classes: tuple[int, ...]) -> None:
        super().__init__()
        self.classes = classes
        self.linear = nn.Linear(grid_width, sum(classes))

    def forward(self, tokens: Tensor) -> list[Tensor]:
        """(B, N, d) → per head (B, classes[h])."""
        return list(self.linear(tokens.flatten(1)).split(self.classes, dim=-1))


def head_loss(logits: list[Tensor], labels: Tensor) -> Tensor:
    """Mean over heads of the cross-entropy, L = (1/H) Σ_h CE(logits_h, labels[:, h])."""
    return torch.stack([F.cross_entropy(lg, labels[:, h]) for h, lg in enumerate(logits)]).mean()


@torch.no_grad()
def head_accuracy(encoder: nn.Module, heads: nn.Module, data: ImageLabels, batch_size: int = 256) -> float:
    """The share of images whose every head is right (a scene: all three slots)."""
    device = next(heads.parameters()).device
    hits = []
    with eval_mode(encoder):
        for start in range(0, len(data.labels), batch_size):
            images = torch.from_numpy(data.images[start : start + batch_size]).to(device)
            labels = torch.from_numpy(data.labels[start : start + batch_size]).to(device)
            predicted = torch.stack([lg.argmax(-1) for lg in heads(encoder(images))], dim=1)
            hits.append((predicted == labels).all(dim=1).float())
    return float(torch.cat(hits).mean())


def pretrain_encoder(
    encoder: nn.Module,
    sources: Mapping[str, VisionSource],
    config: PretrainConfig,
    image_size: int,
    seed: int = 0,
) -> dict[str, float]:
    """Train `encoder` (in place) as a classifier on every labelled source; returns each source's
    validation accuracy (all heads right) after training, as {`<source>`: accuracy}.

    Each step takes one batch from every source and sums their losses, so a small data set (digits) and a
    generated one (scenes) both shape the encoder.
    """
    labelled = labelled_sources(sources)
    device = next(encoder.parameters()).device
    train = {name: s.labelled("train", config.num_train, image_size) for name, s in labelled.items()}  # type: ignore[attr-defined]
    with torch.no_grad(), eval_mode(encoder):
        probe = next(iter(train.values())).images[:1]
        n_tokens, width = encoder(torch.from_numpy(probe).to(device)).shape[1:]
    heads = nn.ModuleDict({name: ClassifierHeads(n_tokens * width, d.classes) for name, d in train.items()}).to(device)
    encoder.requires_grad_(True)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=config.lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    encoder.train()
    for _ in range(config.steps):
        loss = torch.zeros((), device=device)
        for name, data in train.items():
            pick = rng.integers(0, len(data.labels), size=config.batch_size)
            images = torch.from_numpy(data.images[pick]).to(device)
            loss = loss + head_loss(heads[name](encoder(images)), torch.from_numpy(data.labels[pick]).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    encoder.zero_grad(set_to_none=True)
    return {
        name: head_accuracy(encoder, heads[name], s.labelled("val", None, image_size))  # type: ignore[attr-defined]
        for name, s in labelled.items()
    }
