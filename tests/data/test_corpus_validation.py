"""Bad text files are refused (or skipped) with the file name and a reason, before any model is built."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

import minigpt.run
from minigpt.run import train
from minigpt.utils.errors import ConfigError


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if training gets as far as building the model."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the corpus was checked")

    monkeypatch.setattr(minigpt.run, "build_model_config", refuse)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_an_executable_is_refused_as_binary(compose_train, tmp_path, no_model):
    binary = tmp_path / "ls.txt"
    shutil.copy("/bin/ls", binary)
    with pytest.raises(ConfigError, match=r"ls\.txt.*binary"):
        train(compose_train(f"data.corpus.paths=[{binary}]"))


def test_text_with_nul_bytes_is_refused(compose_train, tmp_path, no_model):
    path = _write(tmp_path / "nul.txt", b"hello world, a line of text\n" * 20 + b"\x00\x00" + b"more text\n" * 20)
    with pytest.raises(ConfigError, match=r"nul\.txt.*NUL"):
        train(compose_train(f"data.corpus.paths=[{path}]"))


def test_text_that_is_mostly_not_utf8_is_refused(compose_train, tmp_path, no_model):
    path = _write(tmp_path / "latin.txt", bytes(range(128, 256)) * 4 + b"some ascii\n" * 5)
    with pytest.raises(ConfigError, match=r"latin\.txt.*not UTF-8"):
        train(compose_train(f"data.corpus.paths=[{path}]"))


def test_an_empty_file_is_refused(compose_train, tmp_path, no_model):
    empty = _write(tmp_path / "empty.txt", b"")
    with pytest.raises(ConfigError, match=r"empty\.txt.*empty"):
        train(compose_train(f"data.corpus.paths=[{empty}]"))


def test_a_file_shorter_than_one_window_is_refused(compose_train, tmp_path, no_model):
    short = _write(tmp_path / "short.txt", b"too short")  # 9 characters; the window is block_size+1 = 33
    with pytest.raises(ConfigError, match=r"short\.txt.*too short for one training window"):
        train(compose_train(f"data.corpus.paths=[{short}]"))


def test_skip_bad_files_keeps_the_good_ones_with_a_warning(compose_train, tmp_path, play_file, caplog):
    empty = _write(tmp_path / "empty.txt", b"")
    binary = tmp_path / "ls.bin"
    shutil.copy("/bin/ls", binary)
    cfg = compose_train(f"data.corpus.paths=[{play_file},{empty},{binary}]", "data.skip_bad_files=true")
    with caplog.at_level(logging.WARNING):
        datamodule = minigpt.run.build_datamodule(cfg)
    assert datamodule.corpus.files == [play_file]
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "empty.txt" in warnings and "ls.bin" in warnings and "skipped" in warnings


def test_skip_bad_files_still_fails_when_no_file_remains(compose_train, tmp_path):
    empty = _write(tmp_path / "empty.txt", b"")
    with pytest.raises(ConfigError, match="no usable file"):
        minigpt.run.build_datamodule(compose_train(f"data.corpus.paths=[{empty}]", "data.skip_bad_files=true"))
