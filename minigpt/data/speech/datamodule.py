"""`SpeechDataModule`: clips as log-mel features beside the chat-rendered transcript and its CTC labels.

Every clip is padded with silence to `max_seconds` (a longer one is refused, naming the limit) and turned
into Whisper-style log-mel features (`minigpt.audio.features`), so each has the encoder's `num_tokens`
positions; the user turn's `<audio>` marker becomes that many `<|audio|>` placeholders
(`placeholder_encoder`), exactly as images do. A row carries, for the two alignments of stage=speech:

* LM: input ids and SFT targets (the transcript and its `<|end|>`; IGNORE_INDEX elsewhere);
* CTC: the transcript's token ids (no special tokens), the labels CTC aligns to the encoder's positions;

and the conditions (language, voice, noise, held-out or not) evaluation groups by. Features are stored as
float16 to halve the memory of a few thousand clips.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from minigpt.audio.features import log_mel
from minigpt.data.chat import PreparedRowsDataModule, unrepresentable
from minigpt.data.packing import collate_padded
from minigpt.data.speech.example import AUDIO_MARKER, SpeechExample, SpeechSource
from minigpt.losses.lm import IGNORE_INDEX
from minigpt.model.speech import SpeechConfig
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import AUDIO_TOKEN, add_audio_token, placeholder_encoder, render_chat
from minigpt.utils.errors import ConfigError

META = ("text", "language", "voice", "snr_db", "held_out_voice", "held_out_noise")
# (inputs, targets, features (n_mels, frames) float16, CTC labels, conditions)
SpeechRow = tuple[list[int], list[int], np.ndarray, list[int], dict[str, Any]]


def clip_features(clips: list[np.ndarray], config: SpeechConfig, batch: int = 256) -> np.ndarray:
    """(n, n_mels, max_frames) float16 log-mel features of clips padded with silence to `max_seconds`."""
    out = np.empty((len(clips), config.n_mels, config.max_frames), dtype=np.float16)
    for start in range(0, len(clips), batch):
        chunk = clips[start : start + batch]
        waves = torch.zeros(len(chunk), config.max_samples)
        for i, clip in enumerate(chunk):
            if len(clip) > config.max_samples:
                raise ConfigError(
                    f"A clip lasts {len(clip) / config.sample_rate:.2f} s, longer than speech.max_seconds="
                    f"{config.max_seconds}; raise speech.max_seconds or use shorter clips (e.g. fewer data.max_digits)."
                )
            waves[i, : len(clip)] = torch.from_numpy(clip)
        out[start : start + len(chunk)] = log_mel(waves, config.mel()).numpy()
    return out


def encode_speech_example(
    tokenizer: Tokenizer, example: SpeechExample, audio_tokens: int, add_generation_prompt: bool = False
) -> tuple[list[int], list[bool]]:
    """Render with the chat template, the `<audio>` marker expanded to `audio_tokens` placeholders."""
    encode = placeholder_encoder(tokenizer, AUDIO_MARKER, tokenizer.special_id(AUDIO_TOKEN), audio_tokens)
    messages = example.prompt if add_generation_prompt else example.messages
    return render_chat(tokenizer, messages, add_generation_prompt, encode_content=encode)


def collate_speech(batch: list[SpeechRow], pad_id: int) -> dict[str, Any]:
    """Right-padded ids/targets, stacked features (B, n_mels, frames), padded CTC labels + lengths, conditions."""
    out: dict[str, Any] = collate_padded([(x, y) for x, y, *_ in batch], pad_id)
    out["audio"] = torch.from_numpy(np.stack([features for _, _, features, _, _ in batch])).float()
    labels = [row[3] for row in batch]
    out["ctc_targets"] = torch.zeros(len(batch), max(1, max(map(len, labels))), dtype=torch.long)
    for i, row_labels in enumerate(labels):
        out["ctc_targets"][i, : len(row_labels)] = torch.tensor(row_labels, dtype=torch.long)
    out["ctc_lengths"] = torch.tensor([len(x) for x in labels], dtype=torch.long)
    for key in META:
        out[key] = [row[4][key] for row in batch]
    return out


class SpeechDataModule(PreparedRowsDataModule):
    """Transcribed clips from one or more `SpeechSource`s (spoken digits, a user's WAV folder).

    Args:
        sources: {name: SpeechSource}; a None source is switched off.
        max_seconds, n_mels, subsample_layers: the encoder's input (`speech.*`): clip length limit, mel bands,
            and the subsampling that fixes the placeholders per clip.
        num_train / num_val: examples per source (null: all of a fixed data set).
        seq_len: the longest example; null = the model's context (set before training).
        path / languages: named here so that the command line says `data.path=` / `data.languages=` (read by
            the sources through interpolation).
    """

    collate_rows = staticmethod(collate_speech)

    def __init__(
        self,
        sources: Mapping[str, SpeechSource | None],
        max_seconds: float = 3.0,
        n_mels: int = 80,
        subsample_layers: int = 3,
        num_train: int | None = 4000,
        num_val: int = 400,
        seq_len: int | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 1337,
        path: str | None = None,
        languages: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.sources = {name: source for name, source in sources.items() if source is not None}
        if not self.sources:
            raise ConfigError("data.sources is empty; use data=speech/digits, speech/mix or speech/wav_folder.")
        self.config = SpeechConfig(max_seconds=max_seconds, n_mels=n_mels, subsample_layers=subsample_layers)
        self.num_train, self.num_val, self.seq_len = num_train, num_val, seq_len
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.path, self.languages = path, languages
        self.tokenizer: Tokenizer | None = None
        self.splits: dict[str, list[SpeechRow]] | None = None

    def attach_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Use `tokenizer`, adding the chat tokens and `<|audio|>` if it lacks them."""
        add_audio_token(tokenizer)
        self.tokenizer = tokenizer

    def examples(self, split: str) -> list[SpeechExample]:
        """Every source's examples of `split`."""
        n = self.num_train if split == "train" else self.num_val
        return [ex for source in self.sources.values() for ex in source.examples(split, n)]

    def documents(self) -> list[str]:
        """The transcripts of the training and validation clips (what a tokenizer must cover)."""
        return [ex.text for split in ("train", "val") for ex in self.examples(split)]

    def rows(self, examples: list[SpeechExample]) -> list[SpeechRow]:
        """Checked rows: representable transcripts that fit `seq_len`, with their features."""
        assert self.tokenizer is not None and self.seq_len is not None
        features = clip_features([ex.audio for ex in examples], self.config)
        out = []
        for ex, feats in zip(examples, features):
            if bad := unrepresentable(self.tokenizer, ex.text):
                raise ConfigError(
                    f"A {ex.language} transcript has characters {bad} that the tokenizer cannot represent; "
                    "train with tokenizer=byte (or a model whose tokenizer covers them)."
                )
            ids, mask = encode_speech_example(self.tokenizer, ex, self.config.num_tokens)
            if len(ids) - 1 > self.seq_len:
                raise ConfigError(
                    f"A clip and its transcript take {len(ids)} tokens ({self.config.num_tokens} for the audio), more "
                    f"than data.seq_len+1={self.seq_len + 1}; raise model.block_size, or shorten speech.max_seconds "
                    "or subsample more (speech.subsample_layers)."
                )
            targets = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
            meta = {key: getattr(ex, key) for key in META}
            out.append((ids[:-1], targets, feats, self.tokenizer.encode(ex.text), meta))
        return out

    def prepare(self) -> dict[str, list[SpeechRow]]:
        """Synthesise (or read from the cache) and featurise train and val once; called by the loaders."""
        if self.splits is not None:
            return self.splits
        if self.tokenizer is None:
            raise RuntimeError("SpeechDataModule needs attach_tokenizer(...) before use.")
        if self.seq_len is None:
            raise ConfigError("data.seq_len is unset; set it or train with stage=speech (which sets it).")
        splits = {split: self.rows(self.examples(split)) for split in ("train", "val")}
        random.Random(self.seed).shuffle(splits["train"])
        self.splits = splits
        return splits
