"""WAV files: read (PCM 8/16/24/32-bit and IEEE float, any channels) and write (16-bit PCM), with clear errors.

A WAV file is a RIFF container: "RIFF" <size> "WAVE", then chunks of (4-byte id, little-endian size, data).
The "fmt " chunk says the encoding (1 = integer PCM, 3 = IEEE float, 0xFFFE = extensible, whose sub-format
GUID starts with the same code), channels, sample rate and bits per sample; the "data" chunk holds the
interleaved samples. Everything else (LIST, fact, …) is skipped. Samples come back as float32 in [−1, 1],
channels averaged to mono — what the front end takes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from minigpt.audio.resample import resample
from minigpt.utils.errors import DataError
from minigpt.utils.io import atomic_write_bytes

PCM, IEEE_FLOAT, EXTENSIBLE = 1, 3, 0xFFFE


def _decode(raw: bytes, code: int, bits: int, path: Path) -> np.ndarray:
    """Samples of the data chunk as float32 in [−1, 1] (still interleaved)."""
    width = bits // 8
    raw = raw[: len(raw) // width * width]  # a truncated last sample is dropped
    if code == IEEE_FLOAT and bits in (32, 64):
        return np.frombuffer(raw, dtype=f"<f{width}").astype(np.float32)
    if code != PCM or bits not in (8, 16, 24, 32):
        raise DataError(path, f"uses encoding {code} with {bits}-bit samples; convert it to 16-bit PCM WAV.")
    if bits == 8:  # 8-bit WAV is unsigned, centred on 128
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if bits == 24:  # three little-endian bytes: place them in the top of an int32 to keep the sign
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        return ((b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8).astype(np.float32) / float(1 << 23)
    return np.frombuffer(raw, dtype=f"<i{width}").astype(np.float32) / float(1 << (bits - 1))


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 samples in [−1, 1], sample rate) of the WAV file at `path`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "does not exist; give the path of a .wav file.")
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError(
            path, "is not a WAV file (no RIFF/WAVE header); convert it, e.g. `ffmpeg -i in -ar 16000 out.wav`."
        )
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            if len(body) < 16:
                raise DataError(path, "has a damaged fmt chunk; re-export the WAV file.")
            code, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if code == EXTENSIBLE and len(body) >= 26:
                code = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID's first two bytes
            fmt = (code, channels, rate, bits)
        elif chunk == b"data":
            if fmt is None:
                raise DataError(path, "has its data before its fmt chunk; re-export the WAV file.")
            code, channels, rate, bits = fmt
            if channels < 1 or rate < 1:
                raise DataError(path, f"declares {channels} channels at {rate} Hz; re-export the WAV file.")
            samples = _decode(body, code, bits, path)
            samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(axis=1)
            return samples.astype(np.float32), rate
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    raise DataError(path, "has no data chunk (an empty or truncated WAV file); re-export it.")


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono 16-bit PCM WAV bytes of float samples in [−1, 1] (values beyond are clipped)."""
    pcm = (np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", PCM, 1, sample_rate, sample_rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono float samples as a 16-bit PCM WAV file, atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, encode_wav(samples, sample_rate))
    return path


def load_audio(path: str | Path, sample_rate: int = 16_000) -> tuple[np.ndarray, str | None]:
    """A WAV file as mono float32 at `sample_rate`, and a note saying so when it had to be resampled (else None)."""
    samples, rate = read_wav(path)
    if rate == sample_rate:
        return samples, None
    out = resample(torch.from_numpy(samples).double(), rate, sample_rate).float().numpy()
    return out, f"{path} is {rate} Hz; resampled to {sample_rate} Hz."
