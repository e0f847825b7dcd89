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

from minigpt.evaluation.vision import greedy_answer, reply_exact_match
from minigpt.losses.lm import IGNORE_INDEX, lm_loss
from minigpt.model.folder import resolve_model_folder
from minigpt.model.vision import (
    VISION_WEIGHTS,
    VisionConfig,
    VisionLanguageModel,
    VisionTower,
    load_vision_weights,
    read_vision_weights,
    save_vision_language_model,
)
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel
from minigpt.stages.vision_pretrain import PretrainConfig, pretrain_encoder
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
    fields["fusion"] = vision.get("fusion", "prefix")
    return VisionConfig.from_dict(fields)


class MultimodalStage(Stage):
    """LLaVA-style training of encoder + projector (+ LM) on image conversations.

    Args (besides `Stage`'s):
        vision: the `vision` node: `encoder`, `encoders`, `image_size`, `num_tokens`, `train`
            (projector | vision | projector_lm | all), `mot` (Mixture-of-Transformers, `minigpt.model.mot`).
    """

    def __init__(
        self, *args: Any, vision: Mapping[str, Any], lora: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if vision["train"] not in TRAIN_MODES:
            raise ConfigError(f"vision.train={vision['train']!r} is unknown; use one of {list(TRAIN_MODES)}.")
        if self.tokenizer is None:
            raise ConfigError("stage=multimodal has no tokenizer; set init_from=<chat model folder>.")
        train_encoder, train_projector, train_lm = TRAIN_MODES[vision["train"]]
        use_lora = bool(lora and lora.get("r", 0))
        if use_lora and (not train_lm or vision.get("mot")):
            raise ConfigError(
                "lora.r>0 trains adapters on the LM: use it with vision.train=projector_lm or all, without vision.mot."
            )
        add_image_token(self.tokenizer)
        # grows the embedding for new tokens; with lora.r > 0 only adapters and the new rows will train
        self.chat = ChatModel.prepare(self.model, self.tokenizer, lora, "multimodal")
        tower, parts = self._tower(vision)
        self.vlm = VisionLanguageModel(self.model, tower, self.tokenizer.special_id("<|image|>"))
        load_vision_weights(self.vlm, parts)  # stage 1 → stage 2: tower, MoT image copies, xattn layers
        self.pretrain = PretrainConfig(**dict(vision.get("pretrain") or {}))
        self.pretrain_scores: dict[str, float] = {}
        self.train_encoder = train_encoder
        self.vlm.tower.encoder.requires_grad_(train_encoder)
        for module in self.vlm.connector:
            module.requires_grad_(train_projector)
        if not use_lora:  # LoRA set requires_grad itself: adapters and new token rows only
            self.model.requires_grad_(train_lm)
        self.val_loss = MeanMetric()
        self.val_hits: dict[str, list[float]] = defaultdict(list)

    def _tower(self, vision: Mapping[str, Any]) -> tuple[VisionTower, dict[str, dict[str, Tensor]]]:
        """The tower of `init_from` when it has one (stage 2 after stage 1), else a fresh one; and the
        folder's vision weights by part (`read_vision_weights`), to load once the model is assembled."""
        wanted = vision_config(vision)
        folder = resolve_model_folder(self._init_from) if self._init_from else None
        if folder is None or not (folder / VISION_WEIGHTS).exists():
            return VisionTower(wanted, self.model.config.n_embd), {"tower": {}, "mot": {}, "xattn": {}}
        # The encoder's shape comes from the folder; MoT (untying the LM by modality) is this run's choice.
        config = VisionConfig.from_dict({**self.model.config.extra["vision"], "mot": wanted.mot})
        for name in ("image_size", "num_tokens", "fusion"):
            if getattr(config, name) != getattr(wanted, name):
                raise ConfigError(
                    f"init_from's vision tower has {name}={getattr(config, name)!r}; set vision.{name}="
                    f"{getattr(config, name)} to continue training it."
                )
        parts = read_vision_weights(folder)
        if not wanted.mot:
            parts["mot"] = {}
        return VisionTower(config, self.model.config.n_embd), parts

    def build_model(self, model_config: Any, init_from: str | None) -> Any:
        """`Stage.build_model`, remembering `init_from` (its vision tower is loaded too)."""
        self._init_from = init_from
        return super().build_model(model_config, init_from)

    def setup(self, stage: str) -> None:
        """`vision.pretrain`: before the optimizer is built, pre-train the encoder as a classifier on the
        run's labelled sources (`minigpt.stages.vision_pretrain`), then freeze it if asked. A resumed run
        skips the pre-training (the checkpoint's weights replace it anyway) but keeps the freeze."""
        datamodule = self.trainer.datamodule  # type: ignore[attr-defined]
        self._fit_placeholders(datamodule)
        if stage != "fit" or self.pretrain.steps == 0:
            return
        if not self.pretrain_scores and not self.trainer.ckpt_path:
            encoder = self.vlm.tower.encoder.to(self.trainer.strategy.root_device)
            self.pretrain_scores = pretrain_encoder(
                encoder, datamodule.sources, self.pretrain, self.vlm.tower.config.image_size, datamodule.seed
            )
            for name, accuracy in self.pretrain_scores.items():
                self.print(f"vision.pretrain: {name} val accuracy {accuracy:.3f} after {self.pretrain.steps} steps")
            if self.logger is not None:
                self.logger.log_metrics({f"pretrain/acc/{k}": v for k, v in self.pretrain_scores.items()}, step=0)
        self.vlm.tower.encoder.requires_grad_(self.train_encoder and not self.pretrain.freeze)

    def _fit_placeholders(self, datamodule: Any) -> None:
        """`data.image_tokens` null → the model's placeholders per image; another number is refused."""
        placeholders = self.vlm.tower.config.placeholders
        if getattr(datamodule, "image_tokens", placeholders) is None:
            datamodule.image_tokens = placeholders
        elif datamodule.image_tokens != placeholders:
            raise ConfigError(
                f"data.image_tokens={datamodule.image_tokens} but the model takes {placeholders} <|image|> "
                f"placeholders per image (vision.fusion={self.vlm.tower.config.fusion}); leave data.image_tokens null."
            )

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

    def sample_texts(self, n: int) -> list[str]:
        """What the samples callback shows at each validation: the greedy answers to `n` validation questions
        spread over the sources and kinds, each with its gold answer."""
        assert self.tokenizer is not None  # checked in __init__
        if not hasattr(self, "_sample_examples"):
            examples = self.trainer.datamodule.examples("val")  # type: ignore[attr-defined]
            self._sample_examples = examples[:: max(1, len(examples) // max(n, 1))][:n]
        return [
            f"[{ex.kind}] {ex.question} → {greedy_answer(self.vlm, self.tokenizer, ex)} (gold: {ex.answer})"
            for ex in self._sample_examples
        ]

    def save_model_folder(self, folder: str | Path) -> Path:
        """The LM's model folder plus the vision tower (`vision.safetensors`, `extra.vision`)."""
        if self.chat.lora:  # the merged LM in the folder, the adapter alone beside it (as stage=sft)
            from minigpt.model.lora import save_adapter

            save_adapter(Path(folder).parent / "adapter", self.model, self.tokenizer)
        return save_vision_language_model(folder, self.vlm, self.tokenizer, lm=self.chat.merged(self.model))
