"""`benchmarks/random_model.py`: a folder of the asked shape that loads, with the template folder's tokenizer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serve_fixtures import chat_model_folder

from minigpt.model.folder import load_model_and_tokenizer

ROOT = Path(__file__).resolve().parents[2]


def test_random_model_has_the_asked_shape_and_the_template_tokenizer(tmp_path: Path) -> None:
    like = chat_model_folder(tmp_path / "like")
    out = tmp_path / "wide"
    command = [sys.executable, str(ROOT / "benchmarks/random_model.py"), f"--like={like}", "--layers=3"]
    subprocess.run([*command, "--width=128", f"--out={out}"], check=True, capture_output=True, timeout=120)
    model, tokenizer = load_model_and_tokenizer(out)
    _, like_tokenizer = load_model_and_tokenizer(like)
    assert (model.config.n_layer, model.config.n_embd, model.config.n_head, model.config.mlp_hidden) == (3, 128, 2, 512)
    assert model.config.block_size == 64 and tokenizer.vocab_size == like_tokenizer.vocab_size
    refused = subprocess.run([*command, "--width=100", f"--out={out}"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--width 100 is not a multiple of 64" in refused.stderr
