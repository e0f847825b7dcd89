"""`stage=multimodal`: teach a chat model to see (LLaVA, Liu et al. 2023, "Visual Instruction Tuning").

An image encoder (`minigpt.model.vision`: ViT or CNN) turns each image into N vectors, a projector maps them
into the LM's embedding space, and they replace the N `<|image|>` placeholders of the rendered chat. The
loss is SFT's: next-token cross-entropy on the assistant's tokens only (`lm_loss` on the data's targets).

LLaVA trains in two stages, and so does this stage, by `vision.train`:

* stage 1, feature alignment (§4.2): `projector` trains the projector alone on captions, the LM frozen;
  `vision` also trains the encoder. LLaVA's encoder is a pretrained CLIP ViT, frozen; ours starts from
  scratch, so a useful stage 1 here is `vision.train=vision` (encoder + projector; LM still frozen);
* stage 2, end-to-end fine-tuning (§4.2): `projector_lm` trains the projector and the LM, `all` also the
  encoder (LLaVA keeps the encoder frozen here too).

A frozen part keeps `requires_grad=False` and is not in the optimizer, so its weights stay bit-identical.
The model folder is a normal one for the LM plus the vision tower (`save_vision_language_model`).
Validation logs `val/loss` and the exact-match of the replies, overall and per question type (`val/acc`,
`val/acc/<kind>`), computed under teacher forcing: greedy decoding reproduces the gold reply exactly when
the argmax at every gold position is the gold token (`reply_exact_match`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from minigpt.evaluation.vision import reply_exact_match
from minigpt.losses.lm import IGNORE_INDEX, lm_loss
from minigpt.model.folder import resolve_model_folder
from minigpt.model.mot import is_mot, load_image_weights
from minigpt.model.vision import (
    VISION_WEIGHTS,
    VisionConfig,
    VisionLanguageModel,
    VisionTower,
    read_vision_weights,
    save_vision_language_model,
)
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel
from minigpt.tokenizer.chat import add_image_token
from minigpt.utils.errors import ConfigError

TRAIN_MODES = {  # which of (encoder, projector, LM) train
    "projector": (False, True, False),
    "vision": (True, True, False),
    "projector_lm": (False, True, True),
    "all": (True, True, True),
}


def vision_config(vision: Mapping[str, Any]) -> VisionConfig:
    """The `VisionConfig` of `vision.encoder` (a key of `vision.encoders`) at `vision.image_size`/`num_tokens`."""
    encoders = dict(vision.get("encoders") or {})
    if vision["encoder"] not in encoders:
        raise ConfigError(f"vision.encoder={vision['encoder']!r} is unknown; use one of {sorted(encoders)}.")
    fields = dict(encoders[vision["encoder"]], image_size=vision["image_size"], num_tokens=vision["num_tokens"])
    fields["mot"] = bool(vision.get("mot", False))
    return VisionConfig.from_dict(fields)


class MultimodalStage(Stage):
    """LLaVA-style training of encoder + projector (+ LM) on image conversations.

    Args (besides `Stage`'s):
        vision: the `vision` node: `encoder`, `encoders`, `image_size`, `num_tokens`, `train`
            (projector | vision | projector_lm | all), `mot` (Mixture-of-Transformers, `minigpt.model.mot`).
    """

    def __init__(self, *args: Any, vision: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if vision["train"] not in TRAIN_MODES:
            raise ConfigError(f"vision.train={vision['train']!r} is unknown; use one of {list(TRAIN_MODES)}.")
        if self.tokenizer is None:
            raise ConfigError("stage=multimodal has no tokenizer; set init_from=<chat model folder>.")
        add_image_token(self.tokenizer)
        ChatModel.prepare(self.model, self.tokenizer, None, "multimodal")  # grows the embedding for new tokens
        self.vlm = VisionLanguageModel(self.model, self._tower(vision), self.tokenizer.special_id("<|image|>"))
        if self._image_weights and is_mot(self.model):  # MoT stage 1 → stage 2: its image copies too
            load_image_weights(self.model, self._image_weights)
        train_encoder, train_projector, train_lm = TRAIN_MODES[vision["train"]]
        self.vlm.tower.encoder.requires_grad_(train_encoder)
        self.vlm.tower.projector.requires_grad_(train_projector)
        self.model.requires_grad_(train_lm)
        self.val_loss = MeanMetric()
        self.val_hits: dict[str, list[float]] = defaultdict(list)

    def _tower(self, vision: Mapping[str, Any]) -> VisionTower:
        """The tower of `init_from` when it has one (stage 2 after stage 1), else a fresh one."""
        wanted = vision_config(vision)
        folder = resolve_model_folder(self._init_from) if self._init_from else None
        self._image_weights: dict[str, Tensor] = {}
        if folder is None or not (folder / VISION_WEIGHTS).exists():
            return VisionTower(wanted, self.model.config.n_embd)
        # The encoder's shape comes from the folder; MoT (untying the LM by modality) is this run's choice.
        config = VisionConfig.from_dict({**self.model.config.extra["vision"], "mot": wanted.mot})
        tower = VisionTower(config, self.model.config.n_embd)
        tower_weights, self._image_weights = read_vision_weights(folder)
        tower.load_state_dict(tower_weights)
        if (tower.config.image_size, tower.config.num_tokens) != (wanted.image_size, wanted.num_tokens):
            raise ConfigError(
                f"init_from's encoder takes {tower.config.image_size}px images as {tower.config.num_tokens} tokens; "
                f"set vision.image_size={tower.config.image_size} vision.num_tokens={tower.config.num_tokens}."
            )
        return tower

    def build_model(self, model_config: Any, init_from: str | None) -> Any:
        """`Stage.build_model`, remembering `init_from` (its vision tower is loaded too)."""
        self._init_from = init_from
        return super().build_model(model_config, init_from)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Decay on the trained matrices, none on trained biases and norms (as `Transformer.param_groups`)."""
        trained = [p for p in self.vlm.parameters() if p.requires_grad]
        return [
            {"params": [p for p in trained if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in trained if p.dim() < 2], "weight_decay": 0.0},
        ]

    def _forward(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, dict[str, Any]]:
        logits, aux = self.vlm(batch["input_ids"], batch.get("images"))
        return logits, lm_loss(logits, batch["targets"]), aux

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """SFT's loss (assistant tokens only) on the spliced sequence."""
        _, loss, aux = self._forward(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss + self.aux_loss(aux)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate the masked loss and each reply's exact-match by question type."""
        logits, loss, _ = self._forward(batch)
        self.val_loss.update(loss, weight=(batch["targets"] != IGNORE_INDEX).sum())
        for kind, hit in zip(batch["kinds"], reply_exact_match(logits, batch["targets"]).tolist()):
            self.val_hits[kind].append(float(hit))

    def on_validation_epoch_end(self) -> None:
        """Log `val/loss`, `val/acc` (all replies) and `val/acc/<kind>`."""
        self.log("val/loss", self.val_loss.compute(), prog_bar=True, sync_dist=True)
        self.val_loss.reset()
        hits = [h for values in self.val_hits.values() for h in values]
        if hits:
            self.log("val/acc", torch.tensor(hits).mean(), prog_bar=True)
            for kind, values in sorted(self.val_hits.items()):
                self.log(f"val/acc/{kind}", torch.tensor(values).mean())
        self.val_hits.clear()

    def save_model_folder(self, folder: str | Path) -> Path:
        """The LM's model folder plus the vision tower (`vision.safetensors`, `extra.vision`)."""
        return save_vision_language_model(folder, self.vlm, self.tokenizer)
