"""`python -m minigpt.transcribe run=<speech run> audio=clip.wav [decoder=ctc|lm|both]`: print a clip's transcript.

Options are the keys of conf/transcribe.yaml. What happened to the clip on the way (resampled, cut into
pieces, found silent) is printed before the transcript, one line each, so a surprising transcript comes
with its reason.
"""

from __future__ import annotations

from omegaconf import DictConfig

from minigpt.audio.wav import load_audio
from minigpt.cli.command import command
from minigpt.evaluation.speech import Transcript, transcribe_clip
from minigpt.model.speech import load_speech_language_model
from minigpt.utils.errors import ConfigError


def transcribe(cfg: DictConfig) -> Transcript:
    """Transcribe `cfg.audio` with the speech model of `cfg.run`; print notes and transcripts."""
    model, tokenizer = load_speech_language_model(cfg.run, map_location=cfg.device, field="run")
    samples, note = load_audio(cfg.audio, model.tower.config.sample_rate)
    try:
        result = transcribe_clip(model, tokenizer, samples, cfg.get("decoder"))
    except ValueError as err:  # a decoder the run did not train
        raise ConfigError(str(err)) from None
    result.notes[:0] = [note] if note else []
    for line in result.notes:
        print(f"note: {line}")
    for name, text in result.texts.items():
        print(f"{name}: {text}" if len(result.texts) > 1 else text)
    return result


@command("transcribe")
def main(cfg: DictConfig) -> None:
    """Entry point of `python -m minigpt.transcribe`."""
    transcribe(cfg)


if __name__ == "__main__":
    main()
