"""`stage=speech`: speech recognition by a speech encoder aligned to the LM, by CTC, by the LM, or both.

The encoder (`minigpt.model.speech`) turns a clip's log-mel features into N vectors. Two ways to align them
with text, chosen by `speech.loss`:

* `ctc`: a linear head on the encoder's positions emits the transcript's tokens, trained with CTC
  (Graves et al. 2006; `minigpt.losses.ctc`): monotonic, frame-synchronous, the LM unused;
* `lm`: the projected vectors fill the N `<|audio|>` placeholders of a chat prompt and the LM is trained to
  write the transcript as the assistant's reply (SFT's loss on the reply tokens): the LLaVA recipe
  applied to audio, as in LLM-based ASR (e.g. SALMONN, Qwen-Audio), decoding autoregressively;
* `both`: L = L_lm + λ·L_ctc (λ = `speech.ctc_weight`), CTC as an auxiliary alignment loss on the encoder
  (as joint CTC-attention training, Kim et al. 2017, eq. 4).

Validation logs `val/loss` (the trained objective), `val/ctc_loss`, `val/lm_loss`, the CTC greedy WER
(`val/wer_ctc`) and the LM's reply exact-match under teacher forcing (`val/acc_lm`). `evaluate.py eval=speech`
decodes both ways on held-out data and reports WER/CER per language, voice and noise level.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric, SumMetric

from minigpt.evaluation.speech_metrics import word_errors
from minigpt.evaluation.vision import reply_exact_match
from minigpt.losses.ctc import ctc_greedy, ctc_loss
from minigpt.losses.lm import lm_loss
from minigpt.model.folder import resolve_model_folder
from minigpt.model.speech import (
    SPEECH_WEIGHTS,
    SpeechConfig,
    SpeechLanguageModel,
    SpeechTower,
    save_speech_language_model,
)
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel
from minigpt.tokenizer.chat import AUDIO_TOKEN, add_audio_token
from minigpt.utils.errors import ConfigError

LOSSES = ("ctc", "lm", "both")
TRAIN_MODES = ("all", "tower")
ENCODER_KEYS = ("max_seconds", "n_mels", "subsample_layers", "n_layer", "n_head", "n_embd", "projector_hidden")


class SpeechStage(Stage):
    """Speech encoder + projector + CTC head (+ LM) trained on transcribed clips.

    Args (besides `Stage`'s):
        speech: the `speech` node: `loss` (ctc | lm | both), `ctc_weight`, `train` (all | tower), and the
            encoder's shape (`max_seconds`, `n_mels`, `subsample_layers`, `n_layer`, `n_head`, `n_embd`,
            `projector_hidden`).
    """

    def __init__(self, *args: Any, speech: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if speech["loss"] not in LOSSES:
            raise ConfigError(f"speech.loss={speech['loss']!r} is unknown; use one of {list(LOSSES)}.")
        if speech.get("train", "all") not in TRAIN_MODES:
            raise ConfigError(f"speech.train={speech['train']!r} is unknown; use one of {list(TRAIN_MODES)}.")
        if self.tokenizer is None:
            raise ConfigError("stage=speech has no tokenizer; set init_from=<model folder> or tokenizer=byte.")
        self.loss_kind, self.ctc_weight = speech["loss"], float(speech.get("ctc_weight", 1.0))
        add_audio_token(self.tokenizer)
        ChatModel.prepare(self.model, self.tokenizer, None, "speech")  # grows the embedding for new tokens
        self.slm = SpeechLanguageModel(self.model, self._tower(speech), self.tokenizer.special_id(AUDIO_TOKEN))
        # The LM trains only when its path is trained and not frozen; CTC alone never uses it.
        self.model.requires_grad_(speech.get("train", "all") == "all" and self.loss_kind != "ctc")
        self.val_losses: dict[str, MeanMetric] = torch.nn.ModuleDict(  # type: ignore[assignment]
            {n: MeanMetric() for n in ("loss", "ctc_loss", "lm_loss", "acc_lm")}
        )
        self.val_word_errors, self.val_words = SumMetric(), SumMetric()

    def _tower(self, speech: Mapping[str, Any]) -> SpeechTower:
        """The tower of `init_from` when it has one (continued training), else a fresh one."""
        vocab = int(self.model.config.vocab_size or 0)
        wanted = SpeechConfig(**{k: speech[k] for k in ENCODER_KEYS}, vocab_size=vocab, loss=speech["loss"])
        folder = resolve_model_folder(self._init_from) if self._init_from else None
        if folder is None or not (folder / SPEECH_WEIGHTS).exists():
            return SpeechTower(wanted, self.model.config.n_embd)
        from safetensors.torch import load_file

        config = SpeechConfig.from_dict({**self.model.config.extra["speech"], "loss": speech["loss"]})
        if config.vocab_size != wanted.vocab_size or config.num_tokens != wanted.num_tokens:
            raise ConfigError(
                f"init_from's speech tower reads {config.max_seconds} s clips into a {config.vocab_size}-token CTC "
                f"head; set speech.max_seconds={config.max_seconds} (and the same tokenizer) to continue training it."
            )
        tower = SpeechTower(config, self.model.config.n_embd)
        tower.load_state_dict(load_file(str(folder / SPEECH_WEIGHTS)))
        return tower

    def build_model(self, model_config: Any, init_from: str | None) -> Any:
        """`Stage.build_model`, remembering `init_from` (its speech tower is loaded too)."""
        self._init_from = init_from
        return super().build_model(model_config, init_from)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Decay on the trained matrices, none on trained biases and norms (as `Transformer.param_groups`)."""
        trained = [p for p in self.slm.parameters() if p.requires_grad]
        return [
            {"params": [p for p in trained if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in trained if p.dim() < 2], "weight_decay": 0.0},
        ]

    def _losses(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor | None, Tensor | None]:
        """(the trained loss, its parts, the LM's logits or None, the CTC log-probs or None) of a batch."""
        logits = log_probs = None
        if self.loss_kind == "both":
            logits, log_probs = self.slm.both(batch["input_ids"], batch["audio"])
        elif self.loss_kind == "lm":
            logits, _ = self.slm(batch["input_ids"], batch["audio"])
        else:
            log_probs = self.slm.ctc_log_probs(batch["audio"])
        parts: dict[str, Tensor] = {}
        if logits is not None:
            parts["lm_loss"] = lm_loss(logits, batch["targets"])
        if log_probs is not None:
            frames = torch.full((log_probs.shape[0],), log_probs.shape[1], dtype=torch.long, device=log_probs.device)
            blank = self.slm.tower.config.blank
            parts["ctc_loss"] = ctc_loss(log_probs, batch["ctc_targets"], frames, batch["ctc_lengths"], blank)
        loss = parts.get("lm_loss", 0.0) + self.ctc_weight * parts.get("ctc_loss", 0.0)
        return loss, parts, logits, log_probs  # type: ignore[return-value]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """The chosen alignment loss on a batch of clips."""
        loss, parts, _, _ = self._losses(batch)
        self.log("train/loss", loss, prog_bar=True)
        for name, value in parts.items():
            self.log(f"train/{name}", value)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate the losses, the CTC greedy word errors and the LM's exact-match."""
        loss, parts, logits, log_probs = self._losses(batch)
        n = len(batch["text"])
        self.val_losses["loss"].update(loss, weight=n)
        for name, value in parts.items():
            self.val_losses[name].update(value, weight=n)
        if logits is not None:
            self.val_losses["acc_lm"].update(reply_exact_match(logits, batch["targets"]).float().mean(), weight=n)
        if log_probs is not None and self.tokenizer is not None:
            for ref, labels in zip(batch["text"], ctc_greedy(log_probs, self.slm.tower.config.blank)):
                errors, words = word_errors(ref, self.tokenizer.decode(labels))
                self.val_word_errors.update(errors)
                self.val_words.update(words)

    def on_validation_epoch_end(self) -> None:
        """Log `val/loss`, the losses' parts, `val/acc_lm` and `val/wer_ctc`."""
        for name, metric in self.val_losses.items():
            if metric.update_count:
                self.log(f"val/{name}", metric.compute(), prog_bar=name == "loss", sync_dist=True)
            metric.reset()
        if self.val_words.update_count:
            self.log(
                "val/wer_ctc", self.val_word_errors.compute() / self.val_words.compute().clamp(min=1), prog_bar=True
            )
        self.val_word_errors.reset()
        self.val_words.reset()

    def save_model_folder(self, folder: str | Path) -> Path:
        """The LM's model folder plus the speech tower (`speech.safetensors`, `extra.speech`)."""
        return save_speech_language_model(folder, self.slm, self.tokenizer)
