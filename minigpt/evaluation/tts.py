"""`evaluate.py run=<tts run> eval=tts asr=<speech run>`: how well a TTS model speaks held-out texts.

On the test split's texts (never trained on), spoken by the run's speaker:

* **mel distance**: the DTW-aligned mean |Δ log-mel| (`minigpt.evaluation.dtw`; normalised units, 1 = 40 dB)
  between espeak's reference clip and (a) the model's predicted frames, (b) the frames of the waveform
  Griffin-Lim made from them (what a listener hears), and, for scale, (c) the same texts said by another
  espeak voice of the corpus — the distance between two real voices;
* **round trip**: a speech recogniser (`asr`, a stage=speech run) transcribes our audio; its word error rate
  against the text says whether the words are intelligible. The same recogniser on espeak's reference clips
  gives its own error on this speaker: the floor the TTS can be compared with; and on espeak's log-mel frames
  turned back into audio by our Griffin-Lim ("vocoded reference"): what the vocoder alone costs;
* a spectrogram PNG (reference above, ours below) of a few utterances.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console

from minigpt.audio.features import log_mel
from minigpt.audio.vocoder import features_to_wave
from minigpt.data.speech.corpus import clean_clip
from minigpt.data.speech.synthesised import SynthesisedSource
from minigpt.data.speech.tts import TTSDataModule
from minigpt.evaluation.dtw import dtw_mean_distance
from minigpt.evaluation.spectrogram import plot_spectrograms
from minigpt.evaluation.speech_metrics import error_rate, word_errors
from minigpt.inference.tts import speak
from minigpt.model.tts import load_text_to_mel
from minigpt.utils.errors import ConfigError

# clips (16 kHz) → {decoder: transcripts}: a speech run's trained decoders (CTC greedy, LM greedy)
Transcriber = Callable[[list[np.ndarray]], dict[str, list[str]]]


def asr_transcriber(asr: str) -> Transcriber:
    """The speech recogniser of the stage=speech run `asr`, each clip transcribed by every decoder it trained."""
    from minigpt.evaluation.speech import transcribe_clip
    from minigpt.model.speech import load_speech_language_model

    model, tokenizer = load_speech_language_model(asr, field="tts.asr")

    def transcribe(clips: list[np.ndarray]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for clip in clips:
            for decoder, text in transcribe_clip(model, tokenizer, clip).texts.items():
                out.setdefault(decoder, []).append(text)
        return out

    return transcribe


def other_voice(datamodule: TTSDataModule) -> str:
    """A voice of the corpus that is not the TTS speaker (the second training voice)."""
    source = next(iter(datamodule.sources.values()))
    assert isinstance(source, SynthesisedSource)  # `TTSDataModule.recipes` refuses any other source
    return source.voices[1] if len(source.voices) > 1 else source.held_out_voices[0]


def evaluate_tts(
    folder: Path, datamodule: TTSDataModule, n: int, out_dir: Path, transcribe: Transcriber | None, n_iter: int = 64
) -> dict[str, Any]:
    """Mel distances (and, with `transcribe`, round-trip WER) of the model in `folder` on `n` test texts."""
    model, tokenizer = load_text_to_mel(folder)
    config = model.config.mel_config()
    datamodule.num_val = n  # the test split is drawn with the validation size
    recipes = datamodule.recipes("test")
    voice = other_voice(datamodule)
    distances: dict[str, list[float]] = {"model": [], "vocoded": [], "other_voice": []}
    ours, references, resynthesised, texts, panels = [], [], [], [], []
    for i, (recipe, text, cache_dir) in enumerate(recipes):
        reference = torch.from_numpy(clean_clip(recipe, cache_dir))
        ref_features = log_mel(reference, config)  # (n_mels, F)
        speech = speak(model, tokenizer, text, n_iter=n_iter, seed=i)
        # A barely trained model may say almost nothing: silence pads it to the front end's shortest clip.
        heard = log_mel(torch.nn.functional.pad(speech.wave, (0, max(0, config.n_fft + 1 - len(speech.wave)))), config)
        other = log_mel(torch.from_numpy(clean_clip(dataclasses.replace(recipe, voice=voice), cache_dir)), config)
        distances["model"].append(dtw_mean_distance(speech.features.T, ref_features.T))
        distances["vocoded"].append(dtw_mean_distance(heard.T, ref_features.T))
        distances["other_voice"].append(dtw_mean_distance(other.T, ref_features.T))
        ours.append(speech.wave.numpy())
        references.append(reference.numpy())
        if transcribe is not None:
            generator = torch.Generator().manual_seed(i)
            resynthesised.append(features_to_wave(ref_features, config, n_iter=n_iter, generator=generator).numpy())
        texts.append(text)
        if i < 3:
            panels += [(f"espeak {recipe.voice}: {text!r}", ref_features), (f"ours (Griffin-Lim): {text!r}", heard)]
    frame = config.hop_length / config.sample_rate
    results: dict[str, Any] = {
        "utterances": len(texts),
        "speaker": {"voice": recipes[0][0].voice, "rate": recipes[0][0].rate, "pitch": recipes[0][0].pitch},
        "mel_distance": {key: float(np.mean(values)) for key, values in distances.items()},
        "other_voice": voice,
        "spectrograms": str(plot_spectrograms(panels, out_dir / "tts_spectrograms.png", frame)),
    }
    if transcribe is not None:
        for name, clips in (("ours", ours), ("reference", references), ("vocoded_reference", resynthesised)):
            for decoder, heard_texts in transcribe(clips).items():
                pairs = [word_errors(t, h) for t, h in zip(texts, heard_texts)]
                results.setdefault("wer", {}).setdefault(decoder, {})[name] = error_rate(pairs)
                examples = [{"text": t, "heard": h} for t, h in list(zip(texts, heard_texts))[:5]]
                results.setdefault("examples", {}).setdefault(decoder, {})[name] = examples
    return results


def evaluate_tts_run(folder: Path, data: DictConfig | None, n: int, out_dir: Path, asr: str | None) -> dict[str, Any]:
    """`evaluate_tts` on the data the run trained on (its config's `data` node), transcribed by the run `asr`."""
    if data is None:
        raise ConfigError(
            "eval=tts needs the run's data config (.hydra/config.yaml); pass the run folder, not the model folder."
        )
    datamodule = instantiate(data)
    if not isinstance(datamodule, TTSDataModule):
        raise ConfigError(
            f"eval=tts evaluates a stage=tts run; {folder} was trained on {type(datamodule).__name__} data."
        )
    return evaluate_tts(folder, datamodule, n, out_dir, asr_transcriber(asr) if asr else None)


def show_tts(console: Console, results: dict[str, Any]) -> None:
    """Print the mel distances and the round trip of `evaluate_tts`."""
    mel = results["mel_distance"]
    console.print(
        f"tts on {results['utterances']} held-out texts, DTW mean |Δ log-mel| to espeak: model {mel['model']:.3f}, "
        f"after Griffin-Lim {mel['vocoded']:.3f}; espeak voice {results['other_voice']} {mel['other_voice']:.3f}",
        markup=False,
    )
    for decoder, wer in results.get("wer", {}).items():
        console.print(
            f"round trip ({decoder} decoder): WER {wer['ours']:.3f} on our speech, {wer['reference']:.3f} on espeak's, "
            f"{wer['vocoded_reference']:.3f} on espeak's log-mel through our Griffin-Lim",
            markup=False,
        )
    console.print(f"wrote {results['spectrograms']}", markup=False)
