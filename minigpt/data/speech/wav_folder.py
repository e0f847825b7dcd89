"""A user's folder of WAV files with transcripts (`data=speech/wav_folder data.path=<folder>`).

Transcripts come from `transcripts.tsv` in the folder (lines `file.wav<TAB>text`, optionally `<TAB>language`),
or else from a `.txt` file beside each WAV (`clip.wav` + `clip.txt`). Files at other sample rates are
resampled to 16 kHz. A seeded `val_fraction` of the files is validation and as many again are test.
"""

from __future__ import annotations

import random
from pathlib import Path

from minigpt.audio.wav import load_audio
from minigpt.data.speech.example import SpeechExample, check_split
from minigpt.utils.errors import ConfigError, DataError

TRANSCRIPTS = "transcripts.tsv"


def read_transcripts(folder: Path) -> list[tuple[Path, str, str]]:
    """(wav path, transcript, language) of every clip in `folder`, sorted by file name."""
    table = folder / TRANSCRIPTS
    rows: list[tuple[Path, str, str]] = []
    if table.exists():
        for number, line in enumerate(table.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) not in (2, 3) or not fields[1].strip():
                raise DataError(table, "needs `file.wav<TAB>transcript[<TAB>language]` on every line.", line=number)
            wav = folder / fields[0]
            if not wav.exists():
                raise DataError(table, f"names {fields[0]}, which is not in {folder}.", line=number)
            rows.append((wav, fields[1].strip(), fields[2].strip() if len(fields) == 3 else "unknown"))
    else:
        for wav in sorted(folder.glob("*.wav")):
            text_file = wav.with_suffix(".txt")
            if not text_file.exists():
                raise DataError(
                    wav, f"has no transcript: add {text_file.name} beside it or a {TRANSCRIPTS} to the folder."
                )
            rows.append((wav, text_file.read_text(encoding="utf-8").strip(), "unknown"))
    if not rows:
        raise ConfigError(
            f"data.path={folder} holds no .wav files with transcripts; see docs/speech.md for the layout."
        )
    return sorted(rows)


class WavFolder:
    """A folder of transcribed WAV files as a `SpeechSource`."""

    def __init__(self, path: str | None, val_fraction: float = 0.1, seed: int = 0) -> None:
        if not path:
            raise ConfigError("data=speech/wav_folder needs data.path=<folder of .wav files with transcripts>.")
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"data.path={path} is not a folder; give the folder holding your .wav files.")
        if not 0.0 < val_fraction < 0.5:
            raise ConfigError(f"data.val_fraction={val_fraction} must be between 0 and 0.5 (e.g. 0.1).")
        self.rows = read_transcripts(folder)
        random.Random(seed).shuffle(self.rows)
        self.val_fraction = val_fraction

    def examples(self, split: str, n: int | None) -> list[SpeechExample]:
        """The clips of `split` (val and test: `val_fraction` of the files each, at least one), cut to `n`."""
        check_split(split)
        k = max(1, round(self.val_fraction * len(self.rows)))
        parts = {"val": self.rows[:k], "test": self.rows[k : 2 * k], "train": self.rows[2 * k :]}
        out = [SpeechExample(load_audio(path)[0], text, language) for path, text, language in parts[split]]
        return out[:n] if n is not None else out
