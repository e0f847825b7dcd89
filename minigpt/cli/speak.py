"""Say a text with a trained text-to-speech model (`stage=tts`) and write a WAV file.

    python -m minigpt.speak run=outputs/train/<tts run> text="4 7 1" out=out.wav
    python -m minigpt.speak run=... text="0 9 3" out=slow.wav speed=0.8 png=slow.png griffin_lim.n_iter=100

Options are the keys of `conf/speak.yaml`. The model predicts log-mel frames; Griffin-Lim rebuilds the phase
(docs/speech.md). Prints the audio's length and the real-time factor (seconds of compute per second of audio).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from minigpt.audio.wav import write_wav
from minigpt.cli.command import command
from minigpt.evaluation.spectrogram import plot_spectrograms
from minigpt.inference.tts import Speech, speak
from minigpt.model.tts import load_text_to_mel
from minigpt.utils.errors import ConfigError


def speak_to_file(cfg: DictConfig, console: Console | None = None) -> Speech:
    """Synthesise `cfg.text` with the model of `cfg.run`, write `cfg.out` (and `cfg.png`), print what was done."""
    console = console or Console()
    if Path(str(cfg.out)).suffix.lower() != ".wav":
        raise ConfigError(f"out={cfg.out} must name a .wav file (the only format written), e.g. out=speech.wav.")
    model, tokenizer = load_text_to_mel(cfg.run)
    try:
        speech = speak(
            model, tokenizer, str(cfg.text), cfg.speed, cfg.griffin_lim.n_iter, cfg.griffin_lim.momentum, cfg.seed
        )
    except ValueError as err:  # the text: empty, unknown characters, too long; or a bad speed
        raise ConfigError(str(err)) from None
    write_wav(Path(str(cfg.out)), speech.wave.numpy(), speech.sample_rate)
    if cfg.png:
        frame = model.config.hop_length / model.config.sample_rate
        plot_spectrograms([(f"{cfg.text!s} (predicted log-mel)", speech.features)], Path(str(cfg.png)), frame)
    console.print(
        f"wrote {cfg.out}: {speech.seconds:.2f} s of audio at {speech.sample_rate} Hz in "
        f"{speech.model_seconds + speech.vocoder_seconds:.3f} s (model {speech.model_seconds:.3f} s, Griffin-Lim "
        f"{speech.vocoder_seconds:.3f} s): real-time factor {speech.real_time_factor:.3f}",
        markup=False,
        highlight=False,
    )
    return speech


@command("speak")
def main(cfg: DictConfig) -> Speech:
    """`python -m minigpt.speak`: see the module docstring."""
    return speak_to_file(cfg)
