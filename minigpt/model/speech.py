"""Hearing for the one `Transformer`: a speech encoder over log-mel frames, a projector into the LM's width, a
CTC head, and the same placeholder splice images use (`minigpt.model.splice.SplicedLM`, token `<|audio|>`).

    mel (80, F) ──conv ×k (stride 2)──▶ (N, d), N = ⌈F / 2^k⌉ ──+ positions, bidirectional Blocks──▶ h (N, d)
    h ──projector (Linear·GELU·Linear)──▶ (N, C) at the N `<|audio|>` placeholders of the prompt (LM alignment)
    h ──Linear──▶ (N, V+1) log-probabilities over the LM's tokens and a blank (CTC alignment)

* Convolutional subsampling: Whisper's encoder (Radford et al. 2022, §2.2) starts with two 3-wide
  convolutions, the second of stride 2; speech Transformers (Dong et al. 2018, Gulati et al. 2020) subsample
  by 4. Ours strides every one of `subsample_layers` convolutions, 8× for three: 10 ms frames become 80 ms
  tokens, so a 3 s clip takes 38 LM positions and fits a small context beside its transcript.
* The blocks are the LM's `Block`s, attending bidirectionally (`bidirectional_blocks`), as the ViT's.
* CTC (Graves et al. 2006; `minigpt.losses.ctc`) reads the transcript's tokens straight off the encoder,
  monotonically and without the LM; the LM path instead generates the transcript after the audio, and may
  use what it knows about text. `speech.loss=ctc|lm|both` chooses which train (docs/speech.md).

A model folder of a speech run is a normal folder (the LM in `model.safetensors`, so every text tool reads
it) plus `speech.safetensors` (encoder, projector, CTC head) and the `SpeechConfig` in `extra["speech"]`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from minigpt.audio.features import MelConfig
from minigpt.model.folder import load_model_folder, resolve_model_folder, save_model_folder
from minigpt.model.splice import SplicedLM, bidirectional_blocks, run_bidirectional
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import AUDIO_TOKEN
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write

SPEECH_WEIGHTS = "speech.safetensors"


@dataclass
class SpeechConfig:
    """The speech encoder, projector and CTC head (`speech.*` in conf/speech/default.yaml).

    Clips are `max_seconds` long at most (shorter ones are padded with silence): `max_frames` log-mel frames
    of `n_mels` bands, subsampled 2^`subsample_layers`× into `num_tokens` encoder positions. `vocab_size` is
    the LM's (the CTC head has one more output, the blank, last). `loss` records which alignment trained
    (ctc | lm | both), so that transcription decodes with a trained head.
    """

    max_seconds: float = 3.0
    n_mels: int = 80
    hop_length: int = 160
    sample_rate: int = 16_000
    subsample_layers: int = 3
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    projector_hidden: int | None = None
    vocab_size: int = 0
    loss: str = "both"

    def __post_init__(self) -> None:
        for name in ("n_mels", "hop_length", "sample_rate", "subsample_layers", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"speech.{name}={value!r} must be a positive integer.")
        if not self.max_seconds > 0:
            raise ConfigError(f"speech.max_seconds={self.max_seconds} must be positive (e.g. 3.0).")
        if self.loss not in ("ctc", "lm", "both"):
            raise ConfigError(f"speech.loss={self.loss!r} is unknown; use ctc, lm or both.")
        if self.n_embd % self.n_head:
            raise ConfigError(f"speech.n_embd={self.n_embd} must be divisible by speech.n_head={self.n_head}.")

    @property
    def max_samples(self) -> int:
        """Samples of the longest clip."""
        return round(self.max_seconds * self.sample_rate)

    @property
    def max_frames(self) -> int:
        """Log-mel frames of the longest clip."""
        return self.mel().num_frames(self.max_samples)

    @property
    def num_tokens(self) -> int:
        """Encoder positions (and `<|audio|>` placeholders) per clip: each stride-2 convolution halves, rounding up."""
        n = self.max_frames
        for _ in range(self.subsample_layers):
            n = math.ceil(n / 2)
        return n

    @property
    def blank(self) -> int:
        """The CTC blank's index: after the LM's vocabulary."""
        return self.vocab_size

    def mel(self) -> MelConfig:
        """The front end these features come from (Whisper's, with this config's bands and hop)."""
        return MelConfig(sample_rate=self.sample_rate, n_mels=self.n_mels, hop_length=self.hop_length)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, stored in `config.json`'s `extra["speech"]`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeechConfig:
        """Build from a dict, naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(data) - known):
            raise ConfigError(f"Unknown speech encoder keys {unknown}; known keys are {sorted(known)}.")
        return cls(**data)


class SpeechEncoder(nn.Module):
    """Strided convolutions + position embeddings + bidirectional `Block`s: (B, n_mels, F) → (B, N, d)."""

    full_mask: Tensor

    def __init__(self, config: SpeechConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        for i in range(config.subsample_layers):
            layers += [
                nn.Conv1d(config.n_mels if i == 0 else config.n_embd, config.n_embd, 3, stride=2, padding=1),
                nn.GELU(),
            ]
        self.subsample = nn.Sequential(*layers)
        self.pos = nn.Parameter(0.02 * torch.randn(config.num_tokens, config.n_embd))
        self.blocks, self.norm = bidirectional_blocks(config.n_layer, config.n_head, config.n_embd, config.num_tokens)
        self.register_buffer("full_mask", torch.ones(1, 1, config.num_tokens, config.num_tokens, dtype=torch.bool))

    def forward(self, mel: Tensor) -> Tensor:
        """(B, n_mels, max_frames) → (B, num_tokens, d)."""
        expected = (self.config.n_mels, self.config.max_frames)
        if tuple(mel.shape[1:]) != expected:
            raise ValueError(f"Features of shape {tuple(mel.shape[1:])} given to an encoder built for {expected}.")
        x = self.subsample(mel).transpose(1, 2) + self.pos  # (B, N, d)
        return run_bidirectional(self.blocks, self.norm, x, self.full_mask)


class SpeechTower(nn.Module):
    """Encoder, projector into the LM's width and CTC head."""

    def __init__(self, config: SpeechConfig, lm_width: int) -> None:
        super().__init__()
        self.config = config
        self.encoder = SpeechEncoder(config)
        hidden = config.projector_hidden or lm_width
        # LLaVA-1.5's two-layer MLP projector (as the vision tower's)
        self.projector = nn.Sequential(nn.Linear(config.n_embd, hidden), nn.GELU(), nn.Linear(hidden, lm_width))
        self.ctc = nn.Linear(config.n_embd, config.vocab_size + 1)

    def forward(self, mel: Tensor) -> Tensor:
        """(B, n_mels, F) → (B, N, C): the vectors the LM reads at its placeholders."""
        return self.projector(self.encoder(mel))


class SpeechLanguageModel(SplicedLM):
    """The LM and the speech tower, composed (`SplicedLM`): `forward(input_ids, mel)` → the LM's (logits, aux)."""

    token, items = AUDIO_TOKEN, "clips"

    def __init__(self, lm: Transformer, tower: SpeechTower, audio_id: int) -> None:
        super().__init__(lm, audio_id)
        self.tower = tower

    def encode(self, media: Tensor) -> Tensor:
        """Log-mel features (n, n_mels, F) → (n, N, C)."""
        return self.tower(media)

    def ctc_log_probs(self, mel: Tensor) -> Tensor:
        """(B, N, V+1) CTC log-probabilities of the encoder's positions."""
        return self.tower.ctc(self.tower.encoder(mel)).float().log_softmax(-1)

    def both(self, input_ids: Tensor, mel: Tensor) -> tuple[Tensor, Tensor]:
        """The LM's logits on the spliced prompt and the CTC log-probabilities, from one pass of the encoder."""
        hidden = self.tower.encoder(mel)  # (B, N, d)
        embeds = self.embed_vectors(input_ids, self.tower.projector(hidden))
        logits, _ = self.lm(input_ids, inputs_embeds=embeds)
        return logits, self.tower.ctc(hidden).float().log_softmax(-1)


def save_speech_language_model(folder: str | Path, model: SpeechLanguageModel, tokenizer: Tokenizer | None) -> Path:
    """A normal model folder for the LM, plus `speech.safetensors` and `extra["speech"]` in `config.json`."""
    model.lm.config.extra["speech"] = model.tower.config.to_dict()
    folder = save_model_folder(folder, model.lm, tokenizer)
    weights = model.tower.state_dict()
    atomic_write(
        Path(folder) / SPEECH_WEIGHTS, lambda tmp: save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))
    )
    return folder


def has_speech(path: str | Path) -> bool:
    """Whether the model (or run) folder at `path` holds a speech tower."""
    return (resolve_model_folder(path) / SPEECH_WEIGHTS).exists()


def load_speech_language_model(
    path: str | Path, map_location: str = "cpu", field: str | None = None
) -> tuple[SpeechLanguageModel, Tokenizer]:
    """Read back what `save_speech_language_model` wrote (a folder without a speech tower is refused)."""
    folder = resolve_model_folder(path, field)
    lm, tokenizer = load_model_folder(folder, map_location, field)
    if not (folder / SPEECH_WEIGHTS).exists() or "speech" not in lm.config.extra or tokenizer is None:
        raise ConfigError(
            f"{field or 'run'}={path} has no speech tower ({SPEECH_WEIGHTS} and extra.speech in config.json); "
            "pass the run folder of a stage=speech run."
        )
    tower = SpeechTower(SpeechConfig.from_dict(lm.config.extra["speech"]), lm.config.n_embd)
    tower.load_state_dict(load_file(str(folder / SPEECH_WEIGHTS)))
    model = SpeechLanguageModel(lm, tower, tokenizer.special_id(AUDIO_TOKEN))
    return model.to(torch.device(map_location)), tokenizer
