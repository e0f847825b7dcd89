"""`benchmarks/rlhf.py --quick` on a tiny model writes a table row for every method and the gold-against-KL plot."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from minigpt.model.config import ModelConfig
from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.tasks import get_task
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens

ROOT = Path(__file__).resolve().parents[2]


def tiny_arithmetic_model(path: Path) -> Path:
    """A random 2-layer model whose char tokenizer (with the chat tokens) covers the arithmetic task."""
    task = get_task("arithmetic")
    text = "".join(ex.prompt + ex.answer for split in ("train", "test") for ex in task.examples(split, 200))
    tokenizer = CharTokenizer.train(text + "0123456789")
    add_chat_tokens(tokenizer)
    torch.manual_seed(0)
    config = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=64, vocab_size=tokenizer.vocab_size)
    return save_model_folder(path, Transformer(config), tokenizer)


@pytest.mark.slow
def test_quick_benchmark_writes_every_methods_row(tmp_path):
    sft = tiny_arithmetic_model(tmp_path / "sft")
    out = tmp_path / "bench.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "rlhf.py"), "--quick", "--sft", str(sft),
               "--workdir", str(tmp_path / "work"), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    methods = list(yaml.safe_load((ROOT / "benchmarks" / "rlhf.yaml").read_text())["methods"])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == methods
    cells = {row.split(" | ")[0].strip("| "): row.split(" | ") for row in rows}
    for name in ("sft", "ppo", "grpo", "dr_grpo", "rloo"):  # these always train and measure
        assert "—" not in cells[name][1:8] and "crashed" not in cells[name][-1], cells[name]
    # A random model answers no sum: the preference methods find no pairs and ReST keeps no reply — said so.
    for name in ("dpo", "ipo"):
        assert "no pairs" in cells[name][-1] or cells[name][2] != "—", cells[name]
    for name in ("rest", "rest_em"):
        assert "kept no reply" in cells[name][-1] or cells[name][2] != "—", cells[name]
    assert out.with_suffix(".png").stat().st_size > 0
