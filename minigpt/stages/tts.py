"""`stage=tts`: train a text-to-mel model (FastSpeech-style, `minigpt.model.tts`) on synthesised speech.

A batch holds the characters (`ids`, `valid`), the reference log-mel frames (`mel`, `frame_valid`) and each
character's duration in frames (`durations`, from espeak's word alignment: `minigpt.data.speech.tts`). The
decoder is fed the teacher durations (FastSpeech §3.2), so predicted and reference frames line up one to one;
the loss is L1 on the mel frames plus `duration_weight` × the log-duration MSE (`minigpt.losses.tts`).
Speaking from text alone (predicted durations, Griffin-Lim) is `python -m minigpt.speak` (docs/speech.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from minigpt.losses.tts import duration_mse, mel_l1
from minigpt.model.folder import resolve_model_folder
from minigpt.model.transformer import Transformer
from minigpt.model.tts import TTS_WEIGHTS, TextToMel, TTSConfig, load_text_to_mel, save_text_to_mel
from minigpt.stages.base import Stage
from minigpt.stages.inputs import StageInputs
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError


class TTSStage(Stage):
    """Text → mel frames with teacher-forced durations (the encoder's LM head is never trained: no text samples).

    Args (besides `Stage`'s):
        tts: the `TTSConfig` fields (decoder depth, mel bands, longest utterance, duration predictor).
        duration_weight: the weight of the duration loss beside the mel loss.
        speech_data: the datamodule class that `data=speech/*` builds under this stage (read by the data
            config's `_target_`; `attach_data` checks what actually arrived).
    """

    writes_text = False

    def __init__(
        self,
        *args: Any,
        tts: Mapping[str, Any],
        duration_weight: float = 1.0,
        speech_data: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._tts_fields = dict(tts)
        super().__init__(*args, **kwargs)
        if duration_weight < 0:
            raise ConfigError(f"stage.duration_weight={duration_weight} must be ≥ 0.")
        self.duration_weight = duration_weight
        self.val_mel, self.val_duration = MeanMetric(), MeanMetric()

    def build_model(self, model_config: Any, init_from: str | None) -> tuple[Transformer, Tokenizer | None]:
        """A fresh encoder and TTS head, or `init_from`'s: a TTS run's whole model, or an LM's trunk as encoder."""
        fresh = TTSConfig.from_dict(self._tts_fields)
        if init_from and (resolve_model_folder(init_from, "init_from") / TTS_WEIGHTS).exists():
            self.tts, loaded = load_text_to_mel(init_from, field="init_from")
            if self.tts.config.n_mels != fresh.n_mels:
                bands = self.tts.config.n_mels
                raise ConfigError(f"init_from predicts {bands} mel bands; set stage.tts.n_mels={bands}.")
            self.tts.train()
            return self.tts.encoder, loaded
        encoder, tokenizer = super().build_model(model_config, init_from)
        self.tts = TextToMel(encoder, fresh)
        return encoder, tokenizer

    def attach_data(self, inputs: StageInputs) -> None:
        """Refuse data without mel frames and durations, or frames made by another front end than the model's."""
        super().attach_data(inputs)
        data, model = inputs.mel_frames, self.tts.config.mel_config()
        if data is None:
            raise ConfigError(
                f"stage=tts learns from speech with durations, not {inputs.source} batches: use data=speech/digits."
            )
        for name in ("n_mels", "sample_rate", "n_fft", "hop_length"):
            if getattr(data, name) != getattr(model, name):
                raise ConfigError(
                    f"The data's frames have {name}={getattr(data, name)} but stage.tts.{name}="
                    f"{getattr(model, name)}; set stage.tts.{name}={getattr(data, name)}."
                )

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Decay on every matrix and convolution kernel of encoder and TTS head, none on biases and norms.

        With `optim.muon_lr` (optim=muon) the hidden matrices of the encoder's and the decoder's blocks form the
        Muon group, as `Stage.param_groups` does for a language model; embeddings, the convolutions of the
        duration predictor and the mel head stay with AdamW.
        """
        muon = self.optim_cfg.get("muon_lr") is not None
        hidden: list[Tensor] = []
        decay: list[Tensor] = []
        no_decay: list[Tensor] = []
        for name, param in self.tts.named_parameters():  # a tied matrix appears once
            if not param.requires_grad:
                continue
            if muon and param.dim() == 2 and name.startswith(("encoder.blocks.", "decoder.")):
                hidden.append(param)
            else:
                (decay if param.dim() >= 2 else no_decay).append(param)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if not muon:
            return groups
        cfg = self.optim_cfg
        return [
            {"params": hidden, "muon": True, "lr": cfg.muon_lr, "weight_decay": cfg.get("muon_weight_decay", 0.0)},
            *groups,
        ]

    def _losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(mel L1, log-duration MSE) of a batch, the decoder fed the reference durations."""
        predicted, frame_valid, log_durations = self.tts(batch["ids"], batch["valid"], batch["durations"])
        if predicted.shape[:2] != batch["mel"].shape[:2] or not torch.equal(frame_valid, batch["frame_valid"]):
            raise ValueError("The durations of a batch do not add up to its frames; the data module must make them.")
        return (
            mel_l1(predicted, batch["mel"], frame_valid),
            duration_mse(log_durations, batch["durations"], batch["valid"]),
        )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Mel L1 + duration_weight · duration MSE."""
        mel, duration = self._losses(batch)
        loss = mel + self.duration_weight * duration
        self.log_dict({"train/loss": loss, "train/mel_l1": mel, "train/duration_mse": duration}, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate both losses over the validation utterances, weighted by frames and characters."""
        mel, duration = self._losses(batch)
        self.val_mel.update(mel, weight=batch["frame_valid"].sum())
        self.val_duration.update(duration, weight=batch["valid"].sum())

    def on_validation_epoch_end(self) -> None:
        """Log `val/mel_l1`, `val/duration_mse` and their weighted sum `val/loss`."""
        mel, duration = self.val_mel.compute(), self.val_duration.compute()
        self.log_dict(
            {"val/loss": mel + self.duration_weight * duration, "val/mel_l1": mel, "val/duration_mse": duration},
            prog_bar=True,
            sync_dist=True,
        )
        self.val_mel.reset()
        self.val_duration.reset()

    def save_model_folder(self, folder: str | Path) -> Path:
        """The encoder's model folder plus the TTS head (`tts.safetensors`, `extra.tts`)."""
        return save_text_to_mel(folder, self.tts, self.tokenizer)
