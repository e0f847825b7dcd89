"""What a run prints: no Lightning noise, its log in train.log, its numbers and the next commands at the end."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt.model.config import ModelConfig
from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.run import train
from minigpt.tokenizer.char import CharTokenizer

TRAIN_PY = Path(__file__).resolve().parents[1] / "train.py"


@pytest.mark.slow
def test_console_is_quiet_and_the_run_ends_with_numbers_and_next_commands(tiny_overrides, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable, str(TRAIN_PY), *tiny_overrides, f"hydra.run.dir={run}",
        "trainer.max_steps=12", "trainer.val_check_interval=10",
        "trainer.enable_progress_bar=true", "trainer.enable_model_summary=true",
        "callbacks.progress_bar={_target_:minigpt.callbacks.console.StepProgressBar}",
        "callbacks.samples.num_samples=1", "sampling.max_new_tokens=8",
        "callbacks.samples.prompt='<|pad|>ANNA'", "final_samples=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    before_next = output.split("next:")[0]  # the next commands repeat this run's options, the prompt too
    for noise in ("💡 Tip", "Total FLOPs", "is deprecated", "Epoch 0/-2", "<|pad|>"):
        assert noise not in before_next, noise
    assert "ANNA" in before_next  # the sample with the prompt was printed, without its <|pad|>
    assert "model: " in output and "M parameters" in output  # one summary line instead of the table
    assert "done: " in output and "train/loss=" in output and "val/loss=" in output
    assert f"python evaluate.py run={run}" in output
    assert f"python train.py stage=sft init_from={run / 'model'}" in output
    assert f"resume={run}" in output and "data.corpus.paths=" in output  # train on, with this run's options
    log = (run / "train.log").read_text()
    assert "GPU available" in log and "done: " in log and f"run folder: {run}" in log


def test_a_run_shorter_than_one_validation_still_reports_its_training_loss(compose_train, caplog):
    with caplog.at_level(logging.INFO, logger="minigpt.run"):
        metrics = train(compose_train("trainer.max_steps=5", "trainer.val_check_interval=50"))
    done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done: ")]
    assert "train/loss" in metrics
    assert done and f"train/loss={round(metrics['train/loss'], 4)}" in done[0]


def test_sft_final_samples_are_chat_replies_to_task_prompts(compose_train, tmp_path, capsys):
    alphabet = "abcdefghijkl"
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(alphabet + "reverse: ")
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=tokenizer.vocab_size))
    base = save_model_folder(tmp_path / "base", model, tokenizer)
    cfg = compose_train(
        "stage=sft", f"init_from={base}", "data=tasks/reversal", "data.tasks.reversal.min_len=1",
        "data.tasks.reversal.max_len=2", f"data.tasks.reversal.alphabet={alphabet}", "data.num_train=20",
        "data.num_val=4", "data.num_eval=2", "trainer.max_steps=2", "trainer.val_check_interval=2", "final_samples=2",
        toy_data=False,
    )  # fmt: skip
    train(cfg)
    out = capsys.readouterr().out
    assert out.count("user: reverse") == 2 and out.count("assistant: ") == 2  # prompts of the task, answered
    assert "reversal (score" in out
