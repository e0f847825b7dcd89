"""Speaking for the one `Transformer`: text → mel frames, non-autoregressively (FastSpeech, Ren et al. 2019).

    h = Encoder(text)                  the shared `Transformer`'s trunk, attending both ways, (T, C)
    d̂ = DurationPredictor(h)           log(1 + frames) each character lasts, (T,)          [FastSpeech §3.3]
    H = LR(h, d)                        the length regulator: character t's vector repeated d_t times, (Σd, C)
    M̂ = Linear(Decoder(H[::r] + PE))   bidirectional blocks over every r-th frame, then r mel vectors each

The durations d come from the synthesiser's own alignment in training (FastSpeech distils them from a teacher's
attention; here espeak-ng says where each word starts) and from d̂, rounded, when speaking. The loss is an L1
on the log-mel frames plus an MSE on log-durations (`minigpt.losses.tts`). A vocoder turns the mel frames
into a waveform: Griffin-Lim (`minigpt.audio.griffin_lim`), which needs no training.

The reduction factor r (`frames_per_step`, Tacotron's, Wang et al. 2017 §3.3) lets each decoder position emit r
consecutive frames: neighbouring frames are highly correlated, and the decoder's cost (linear in positions for
its MLPs, quadratic for attention) falls r-fold or more. The decoder reads the regulated vector of the first
frame of each group; a group straddling two characters is placed by attention like any other frame.

The encoder IS the shared `Transformer` (token + position embeddings, blocks, final norm) given a mask that
lets every character see every other, as the vision encoder does with patches; the decoder's blocks are the
shared `Block` at the decoder's size. A model folder of a TTS run is a normal folder (the encoder in
`model.safetensors`) plus `tts.safetensors` (duration predictor, decoder, mel head) and the `TTSConfig` in
`config.json`'s `extra["tts"]`.
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
from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_folder, resolve_model_folder, save_model_folder
from minigpt.model.transformer import Block, Transformer, build_norm
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write

TTS_WEIGHTS = "tts.safetensors"


@dataclass
class TTSConfig:
    """The parts of a text-to-mel model besides its text encoder (`stage.tts` in conf/stage/tts.yaml).

    `n_mels`, `sample_rate`, `n_fft`, `hop_length`: the log-mel front end of the frames (Whisper's; kept with the
    model so that speaking inverts the same one); `decoder_layers` bidirectional blocks over frames, as wide
    and with as many heads as the encoder, each position emitting `frames_per_step` frames (the reduction
    factor); `max_frames` the longest utterance in frames (its positions); the duration
    predictor is two 1-D convolutions of `duration_kernel` taps and `duration_hidden` channels (FastSpeech §3.3).
    """

    n_mels: int = 80
    sample_rate: int = 16_000
    n_fft: int = 400
    hop_length: int = 160
    decoder_layers: int = 2
    max_frames: int = 1000
    frames_per_step: int = 1
    duration_hidden: int = 128
    duration_kernel: int = 3
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in (
            "n_mels",
            "sample_rate",
            "n_fft",
            "hop_length",
            "decoder_layers",
            "max_frames",
            "frames_per_step",
            "duration_hidden",
            "duration_kernel",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"stage.tts.{name}={value!r} must be a positive integer.")
        if self.duration_kernel % 2 == 0:
            raise ConfigError(f"stage.tts.duration_kernel={self.duration_kernel} must be odd (e.g. 3): it is centred.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"stage.tts.dropout={self.dropout} must be in [0, 1).")

    def mel_config(self) -> MelConfig:
        """The front end the frames were made with (and that the vocoder inverts)."""
        return MelConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, stored in `config.json`'s `extra["tts"]`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TTSConfig:
        """Build from a dict, naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(data) - known):
            raise ConfigError(f"Unknown stage.tts keys {unknown}; known keys are {sorted(known)}.")
        return cls(**data)


def sinusoidal_positions(length: int, width: int) -> Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(…) (Vaswani et al. 2017, §3.5), (length, width).

    Fixed rather than learned for the frames: an utterance longer than any seen in training still gets
    positions the decoder has met the like of (nearby angles), where a learned table would hold untrained rows.
    """
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))  # (C/2,)
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: width // 2])
    return table


def key_mask(valid: Tensor) -> Tensor:
    """(B, S) True at real positions → (B, 1, 1, S) attention mask: every query sees every real key."""
    return valid[:, None, None, :]


def length_regulate(hidden: Tensor, durations: Tensor) -> tuple[Tensor, Tensor]:
    """FastSpeech's length regulator (§3.2): row t of `hidden` (B, T, C) repeated `durations[b, t]` times.

    Returns the frames (B, F, C), F the longest Σ_t d_t of the batch (zero-padded), and their mask (B, F).
    """
    counts = durations.clamp_min(0).long()
    rows = [h.repeat_interleave(d, dim=0) for h, d in zip(hidden, counts)]  # each (Σd, C)
    frames = nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, F, C)
    lengths = counts.sum(dim=1)  # (B,)
    mask = torch.arange(frames.shape[1], device=hidden.device)[None, :] < lengths[:, None]  # (B, F)
    return frames, mask


class DurationPredictor(nn.Module):
    """Conv1d → ReLU → LayerNorm → dropout, twice, then a linear layer: (B, T, C) → log(1 + d̂) (B, T)."""

    def __init__(self, width: int, config: TTSConfig) -> None:
        super().__init__()
        pad = config.duration_kernel // 2
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(width, config.duration_hidden, config.duration_kernel, padding=pad),
                nn.Conv1d(config.duration_hidden, config.duration_hidden, config.duration_kernel, padding=pad),
            ]
        )
        self.norms = nn.ModuleList(nn.LayerNorm(config.duration_hidden) for _ in self.convs)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.duration_hidden, 1)

    def forward(self, hidden: Tensor, valid: Tensor) -> Tensor:
        """(B, T, C) and its mask (B, T) → (B, T); padded positions are zeroed before every convolution."""
        x = hidden
        for conv, norm in zip(self.convs, self.norms):
            x = x * valid.unsqueeze(-1)  # padding must not leak into a real character's window
            x = self.drop(norm(torch.relu(conv(x.transpose(1, 2)).transpose(1, 2))))  # (B, T, hidden)
        return self.out(x).squeeze(-1)


class TextToMel(nn.Module):
    """Encoder (the shared `Transformer`), duration predictor, length regulator, frame decoder, mel head.

    Args:
        encoder: the `Transformer` whose trunk reads the characters (its LM head is not used).
        config: the `TTSConfig`.
    """

    def __init__(self, encoder: Transformer, config: TTSConfig) -> None:
        super().__init__()
        self.encoder, self.config = encoder, config
        width = encoder.config.n_embd
        self.duration = DurationPredictor(width, config)
        blocks = decoder_block_config(encoder.config, config)
        self.decoder = nn.ModuleList(Block(blocks, i) for i in range(config.decoder_layers))
        self.norm = build_norm(blocks)
        self.mel_head = nn.Linear(width, config.n_mels * config.frames_per_step)
        self.frame_pos: Tensor
        steps = -(-config.max_frames // config.frames_per_step)
        self.register_buffer("frame_pos", sinusoidal_positions(steps, width), persistent=False)

    def encode(self, ids: Tensor, valid: Tensor) -> Tensor:
        """Character vectors (B, T, C): the encoder's trunk with every real character visible to every other."""
        hidden, _ = self.encoder.hidden_states(ids, attn_mask=key_mask(valid))
        return hidden

    def decode(self, frames: Tensor, frame_valid: Tensor) -> Tensor:
        """Regulated frame vectors (B, F, C) → mel frames (B, F, n_mels), r = `frames_per_step` per decoder position."""
        F = frames.shape[1]
        if F > self.config.max_frames:
            raise ValueError(
                f"The utterance needs {F} frames, more than stage.tts.max_frames="
                f"{self.config.max_frames}; say less at once (split the text) or train with a larger max_frames."
            )
        r = self.config.frames_per_step
        x = frames[:, ::r]  # (B, G, C), G = ⌈F / r⌉: the first frame of each group
        x = x + self.frame_pos[: x.shape[1]]
        mask = key_mask(frame_valid[:, ::r])
        for block in self.decoder:
            x, _ = block(x, None, mask, None)
        mel = self.mel_head(self.norm(x))  # (B, G, r·n_mels)
        return mel.reshape(mel.shape[0], -1, self.config.n_mels)[:, :F]  # (B, G·r, n_mels) → (B, F, n_mels)

    def forward(self, ids: Tensor, valid: Tensor, durations: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Teacher-forced durations (training): mel frames (B, F, n_mels), their mask (B, F), log(1 + d̂) (B, T)."""
        hidden = self.encode(ids, valid)
        log_durations = self.duration(hidden, valid)
        frames, frame_valid = length_regulate(hidden, durations * valid)
        return self.decode(frames, frame_valid), frame_valid, log_durations

    @torch.no_grad()
    def synthesise(self, ids: Tensor, valid: Tensor, speed: float = 1.0) -> tuple[Tensor, Tensor]:
        """Mel frames (B, F, n_mels) and their mask from the predicted durations d̂ = round(exp(ℓ̂) − 1) / speed.

        Every utterance keeps at least one frame, so that the decoder always has something to attend.
        """
        if speed <= 0:
            raise ValueError(f"speed={speed} must be positive (1 = the training data's pace).")
        hidden = self.encode(ids, valid)
        durations = torch.round((torch.exp(self.duration(hidden, valid)) - 1).clamp_min(0) / speed).long()
        durations = durations * valid
        durations[:, 0] += (durations.sum(dim=1) == 0).long()
        frames, frame_valid = length_regulate(hidden, durations)
        return self.decode(frames, frame_valid), frame_valid


def decoder_block_config(encoder: ModelConfig, config: TTSConfig) -> ModelConfig:
    """The `ModelConfig` of the decoder's (shared) `Block`s: the encoder's family and width, over frames."""
    return dataclasses.replace(
        encoder,
        n_layer=config.decoder_layers,
        block_size=-(-config.max_frames // config.frames_per_step),
        dropout=config.dropout,
        moe=None,
        extra={},
        activation_checkpointing=False,
    )


def save_text_to_mel(folder: str | Path, model: TextToMel, tokenizer: Tokenizer | None) -> Path:
    """A normal model folder for the encoder, plus `tts.safetensors` and `extra["tts"]` in `config.json`."""
    model.encoder.config.extra["tts"] = model.config.to_dict()
    folder = save_model_folder(folder, model.encoder, tokenizer)
    weights = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    atomic_write(Path(folder) / TTS_WEIGHTS, lambda tmp: save_file(weights, str(tmp)))
    return folder


def load_text_to_mel(path: str | Path, map_location: str = "cpu", field: str = "run") -> tuple[TextToMel, Tokenizer]:
    """Read back what `save_text_to_mel` wrote; a folder without the TTS parts is refused."""
    folder = resolve_model_folder(path, field)
    encoder, tokenizer = load_model_folder(folder, map_location, field)
    if not (folder / TTS_WEIGHTS).exists() or "tts" not in encoder.config.extra or tokenizer is None:
        raise ConfigError(
            f"{field}={path} holds no text-to-speech model ({TTS_WEIGHTS} and extra.tts in config.json); "
            "pass the run folder of a stage=tts run."
        )
    model = TextToMel(encoder, TTSConfig.from_dict(encoder.config.extra["tts"]))
    missing, unexpected = model.load_state_dict(load_file(str(folder / TTS_WEIGHTS), device=map_location), strict=False)
    if unexpected or [k for k in missing if not k.startswith("encoder.")]:
        raise ConfigError(
            f"{folder / TTS_WEIGHTS} does not match its config.json (missing {missing}, extra {unexpected})."
        )
    return model.eval(), tokenizer
