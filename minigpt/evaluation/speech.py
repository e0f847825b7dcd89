"""Transcribing clips with a speech run, and `evaluate.py eval=speech`: WER/CER per language, kind of text, voice
and noise level on held-out clips, for each trained decoder (CTC greedy, LM greedy), and a spectrogram PNG.

Decoding: CTC takes the best path of the CTC head (`ctc_greedy`); the LM continues the prompt
`<|user|> <|audio|>×N <|end|> <|assistant|>` greedily until `<|end|>`. All prompts have the same length, so a
batch decodes together with the encoder run once (`SplicedLM.greedy_batch`).

Clips longer than the model's `max_seconds` are cut into pieces at the quietest 10 ms frame of each window's
second half (between words, mostly), transcribed piece by piece and joined; a silent clip is not decoded.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from minigpt.audio.features import log_mel
from minigpt.data.speech.datamodule import clip_features, encode_speech_example
from minigpt.data.speech.digits import SpokenDigits
from minigpt.data.speech.example import SpeechExample, SpeechSource
from minigpt.evaluation.spectrogram import plot_spectrograms
from minigpt.evaluation.speech_metrics import char_errors, error_rate, word_errors
from minigpt.losses.ctc import ctc_greedy
from minigpt.model.speech import SpeechLanguageModel, load_speech_language_model
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import END_OF_TURN
from minigpt.utils.modes import eval_mode

SILENCE_PEAK = 1e-3  # −60 dBFS: a clip whose loudest sample is below this holds no speech to transcribe
MAX_NEW_TOKENS = 48


@dataclass
class Transcript:
    """One clip's transcript by each decoder asked for, and what was done to the clip on the way."""

    texts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def decoders_of(model: SpeechLanguageModel, decoder: str | None = None) -> list[str]:
    """The decoders to use: `decoder` (ctc | lm | both), else those the run trained."""
    trained = model.tower.config.loss
    wanted = decoder or trained
    if wanted not in ("ctc", "lm", "both"):
        raise ValueError(f"decoder={wanted!r} is unknown; use ctc, lm or both.")
    if trained != "both" and wanted != trained:
        raise ValueError(
            f"decoder={wanted} asks for a head this run did not train (speech.loss={trained}); use {trained}."
        )
    return ["ctc", "lm"] if wanted == "both" else [wanted]


@torch.no_grad()
def transcribe_features(
    model: SpeechLanguageModel, tokenizer: Tokenizer, features: torch.Tensor, decoders: list[str], batch_size: int = 64
) -> dict[str, list[str]]:
    """{decoder: transcripts} of features (n, n_mels, frames) (as `clip_features` makes them)."""
    config = model.tower.config
    prompt, _ = encode_speech_example(
        tokenizer, SpeechExample(np.zeros(1), ""), config.num_tokens, add_generation_prompt=True
    )
    out: dict[str, list[str]] = {name: [] for name in decoders}
    device = model.lm.tok_emb.weight.device
    with eval_mode(model):
        for start in range(0, features.shape[0], batch_size):
            mel = features[start : start + batch_size].to(device).float()
            hidden = model.tower.encoder(mel)
            if "ctc" in out:
                labels = ctc_greedy(model.tower.ctc(hidden), config.blank)
                out["ctc"] += [tokenizer.decode(row, skip_special=True) for row in labels]
            if "lm" in out:
                prompts = torch.tensor([prompt] * mel.shape[0], device=device)
                rows = model.greedy_batch(
                    prompts, model.tower.projector(hidden), tokenizer.special_id(END_OF_TURN), MAX_NEW_TOKENS
                )
                out["lm"] += [tokenizer.decode(row, skip_special=True).strip() for row in rows]
    return out


def split_long_clip(samples: np.ndarray, max_samples: int, hop: int = 160) -> list[np.ndarray]:
    """Pieces of at most `max_samples`, each cut at the quietest `hop`-sample frame of its window's second half."""
    pieces, start = [], 0
    while len(samples) - start > max_samples:
        window = samples[start : start + max_samples]
        half = max_samples // 2
        frames = window[half : half + (len(window) - half) // hop * hop].reshape(-1, hop)
        cut = start + half + int(np.argmin((frames.astype(np.float64) ** 2).sum(axis=1))) * hop + hop // 2
        pieces.append(samples[start:cut])
        start = cut
    pieces.append(samples[start:])
    return pieces


def transcribe_clip(
    model: SpeechLanguageModel, tokenizer: Tokenizer, samples: np.ndarray, decoder: str | None = None
) -> Transcript:
    """Transcribe one 16 kHz clip of any length (chunked beyond `max_seconds`); silence is reported, not decoded."""
    config = model.tower.config
    result = Transcript()
    decoders = decoders_of(model, decoder)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak < SILENCE_PEAK:
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"
        result.notes.append(f"the clip is silent (peak {level}); nothing to transcribe.")
        result.texts = dict.fromkeys(decoders, "")
        return result
    pieces = [samples]
    if len(samples) > config.max_samples:
        pieces = split_long_clip(samples, config.max_samples, config.hop_length)
        result.notes.append(
            f"the clip lasts {len(samples) / config.sample_rate:.1f} s, longer than the model's "
            f"{config.max_seconds} s: transcribed in {len(pieces)} pieces cut at pauses."
        )
    pieces = [p if len(p) > config.mel().n_fft else np.pad(p, (0, config.mel().n_fft + 1 - len(p))) for p in pieces]
    features = torch.from_numpy(clip_features(pieces, config))
    texts = transcribe_features(model, tokenizer, features, decoders)
    result.texts = {name: " ".join(t for t in rows if t) for name, rows in texts.items()}
    return result


GROUPS = {
    "all": lambda ex: "all",
    "language": lambda ex: ex.language,
    "kind": lambda ex: ex.kind,
    "voice": lambda ex: "held-out" if ex.held_out_voice else "seen",
    "noise": lambda ex: "held-out" if ex.held_out_noise else "seen",
    "voice×noise": lambda ex: (
        f"{'held-out' if ex.held_out_voice else 'seen'} voice, {'held-out' if ex.held_out_noise else 'seen'} noise"
    ),
    "snr_db": lambda ex: "clean" if ex.snr_db is None else f"{ex.snr_db:g} dB",
}


def speech_scores(examples: list[SpeechExample], hyps: Mapping[str, list[str]]) -> dict[str, Any]:
    """{decoder: {group: {value: {wer, cer, n}}}} over `examples` (see `GROUPS`)."""
    scores: dict[str, Any] = {}
    for decoder, texts in hyps.items():
        per: dict[str, Any] = {}
        for group, key in GROUPS.items():
            buckets: dict[str, list[tuple[SpeechExample, str]]] = defaultdict(list)
            for ex, hyp in zip(examples, texts):
                buckets[key(ex)].append((ex, hyp))
            per[group] = {
                value: {
                    "wer": error_rate([word_errors(ex.text, hyp) for ex, hyp in rows]),
                    "cer": error_rate([char_errors(ex.text, hyp) for ex, hyp in rows]),
                    "n": len(rows),
                }
                for value, rows in sorted(buckets.items())
            }
        scores[decoder] = per
    return scores


def plot_transcripts(examples: list[SpeechExample], hyps: Mapping[str, list[str]], out: Path) -> Path:
    """A PNG of the log-mel spectrograms of `examples`, each titled with its reference and each decoder's transcript."""
    panels = []
    for i, ex in enumerate(examples):
        noise = "clean" if ex.snr_db is None else f"{ex.snr_db:g} dB SNR"
        said = "   ".join(f"{name}: {texts[i]!r}" for name, texts in hyps.items())
        caption = f"[{ex.language}, voice {ex.voice}, {noise}] ref: {ex.text!r}   {said}"
        panels.append((caption, log_mel(torch.from_numpy(ex.audio))))
    return plot_spectrograms(panels, out)


def evaluate_speech_run(
    folder: Path, data: DictConfig | None, n: int, out_dir: Path, decoder: str | None = None
) -> dict[str, Any]:
    """`evaluate.py eval=speech`: WER/CER on the test split of the run's data (`data`, else English spoken digits)
    by each decoder, grouped by language, kind of text, voice and noise (`speech_scores`), and
    `speech_spectrograms.png`."""
    from hydra.utils import instantiate

    model, tokenizer = load_speech_language_model(folder, field="run")
    sources: dict[str, SpeechSource] = {"digits": SpokenDigits()}
    if data is not None and "sources" in data:
        sources = {name: source for name, source in instantiate(data.sources).items() if source is not None}
    examples = [ex for source in sources.values() for ex in source.examples("test", n)]
    features = torch.from_numpy(clip_features([ex.audio for ex in examples], model.tower.config))
    hyps = transcribe_features(model, tokenizer, features, decoders_of(model, decoder))
    # A spread of conditions for the picture: every len/4-th example.
    shown = list(range(0, len(examples), max(1, len(examples) // 4)))[:4]
    png = plot_transcripts(
        [examples[i] for i in shown],
        {name: [texts[i] for i in shown] for name, texts in hyps.items()},
        out_dir / "speech_spectrograms.png",
    )
    return {"scores": speech_scores(examples, hyps), "n": len(examples), "spectrograms": str(png)}
