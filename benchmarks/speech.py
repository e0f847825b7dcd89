"""Real-time factor of speech on this CPU: seconds of compute per second of audio (below 1 = faster than real time).

    python benchmarks/speech.py --run <stage=speech run> [--clips 64] [--threads 1]
    python benchmarks/speech.py --tts-run <stage=tts run> [--clips 64] [--threads 1]     # synthesis only

Transcription (this file, speech-asr): for each decoder the run trained, one clip at a time (what
`python -m minigpt.transcribe` does) and in batches of 32 (what `evaluate.py eval=speech` does); the front end
(resampling espeak's 22,050 Hz → 16 kHz excluded, log-mel included) is timed on its own too. Synthesis
(`synthesis_rtf`, speech-tts): our TTS model and Griffin-Lim, one text at a time as `python -m minigpt.speak`
does, against espeak-ng's own speed on the same texts (`espeak_rtf`), the yardstick for stage=tts.
Clips are English digit strings from the test split of `data=speech/digits` (held-out voices and noise included).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from minigpt.data.speech.corpus import SAMPLE_RATE
from minigpt.data.speech.datamodule import clip_features
from minigpt.data.speech.digits import SpokenDigits
from minigpt.data.speech.espeak import espeak
from minigpt.evaluation.speech import decoders_of, transcribe_features
from minigpt.inference.tts import Speech, speak
from minigpt.model.speech import load_speech_language_model
from minigpt.model.tts import load_text_to_mel


def timed(fn: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of `repeats` wall times of `fn()` (seconds): the least disturbed by other load."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def transcription_rtf(run: str, clips: list[np.ndarray]) -> dict[str, float]:
    """{what: real-time factor} of the front end and of each trained decoder, per clip and batched."""
    model, tokenizer = load_speech_language_model(run)
    config = model.tower.config
    audio_seconds = sum(len(c) for c in clips) / SAMPLE_RATE
    out = {"front end (log-mel)": timed(lambda: clip_features(clips, config)) / audio_seconds}
    features = torch.from_numpy(clip_features(clips, config))
    for decoder in decoders_of(model):

        def each(names: list[str] = [decoder]) -> None:  # noqa: B006 (binds this loop's decoder)
            for i in range(len(clips)):
                transcribe_features(model, tokenizer, features[i : i + 1], names)

        def batched(names: list[str] = [decoder]) -> None:  # noqa: B006
            transcribe_features(model, tokenizer, features, names, batch_size=32)

        out[f"encoder + {decoder} decoding, 1 clip at a time"] = timed(each) / audio_seconds
        out[f"encoder + {decoder} decoding, batches of 32"] = timed(batched) / audio_seconds
    return out


def espeak_rtf(texts: list[str], language: str = "en") -> float:
    """espeak-ng's real-time factor: synthesis seconds per second of the audio it makes (22,050 Hz, no resampling)."""
    engine = espeak()
    made = 0.0

    def run() -> None:
        nonlocal made
        made = sum(len(engine.synthesize(text, language).samples) for text in texts) / engine.sample_rate

    return timed(run) / made


def synthesis_rtf(run: str, texts: list[str], n_iter: int = 64) -> dict[str, float]:
    """{what: real-time factor} of our TTS on `texts`: the model (text → mel frames), Griffin-Lim, and both."""
    model, tokenizer = load_text_to_mel(run)
    speak(model, tokenizer, texts[0], n_iter=n_iter)  # warm-up: first calls allocate
    # Each `Speech` times its own model and Griffin-Lim parts, so one pass gives both shares.
    said: list[Speech] = [speak(model, tokenizer, text, n_iter=n_iter) for text in texts]
    audio_seconds = sum(s.seconds for s in said)
    model_seconds, vocoder_seconds = sum(s.model_seconds for s in said), sum(s.vocoder_seconds for s in said)
    return {
        "TTS model (text → mel frames)": model_seconds / audio_seconds,
        f"Griffin-Lim ({n_iter} iterations)": vocoder_seconds / audio_seconds,
        "TTS total (python -m minigpt.speak)": (model_seconds + vocoder_seconds) / audio_seconds,
    }


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a stage=speech run or model folder (transcription)")
    parser.add_argument("--tts-run", help="a stage=tts run or model folder (synthesis)")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not args.run and not args.tts_run:
        parser.error("give --run (transcription), --tts-run (synthesis) or both")
    torch.set_num_threads(args.threads)
    source = SpokenDigits()
    examples = source.examples("test", args.clips)
    clips = [ex.audio for ex in examples]
    print(f"{len(clips)} clips, {sum(map(len, clips)) / SAMPLE_RATE:.1f} s of audio, {args.threads} thread(s)")
    print("| what | real-time factor |\n|---|---|")
    for what, rtf in (transcription_rtf(args.run, clips) if args.run else {}).items():
        print(f"| {what} | {rtf:.4f} |")
    texts = [source.utterance("test", i)[0].text for i in range(args.clips)]
    print(f"| espeak-ng synthesis (reference for stage=tts) | {espeak_rtf(texts):.4f} |")
    transcripts = [source.utterance("test", i)[1] for i in range(args.clips)]  # "4 7 1": what our TTS reads
    for what, rtf in (synthesis_rtf(args.tts_run, transcripts) if args.tts_run else {}).items():
        print(f"| {what} | {rtf:.4f} |")


if __name__ == "__main__":
    main()
