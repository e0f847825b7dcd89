"""evaluate.py on a finished run: metrics agree with each other and with training, files are written."""

from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf

from minigpt.evaluation.report import evaluate_run
from minigpt.run import train
from minigpt.utils.errors import ConfigError


def test_evaluate_run_writes_metrics_plot_and_samples(compose_train, compose_eval, tmp_path):
    train_cfg = compose_train("trainer.max_steps=20", "trainer.log_every_n_steps=2")
    metrics = train(train_cfg)
    run_dir = tmp_path / "run"
    # Hydra saves the composed config into the run folder; evaluate.py reads the data config from it.
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(train_cfg, run_dir / ".hydra" / "config.yaml")
    cfg = compose_eval(
        f"run={run_dir}",
        "num_samples=2",
        "sampling.max_new_tokens=10",
        "batch_size=4",
        f"paths.cache_dir={tmp_path / 'cache'}",
    )
    results = evaluate_run(cfg)

    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["val/loss"] == pytest.approx(results["val/loss"])
    # torchmetrics' perplexity, computed from the logits on its own, equals e^(our loss).
    assert saved["val/ppl"] == pytest.approx(math.exp(saved["val/loss"]), rel=1e-4)
    # Same weights, same validation windows (limit_val_batches only cut them during training).
    assert saved["val/loss"] == pytest.approx(metrics["val/loss"], rel=0.05)
    assert len(saved["samples"]) == 2
    assert (run_dir / "loss_curves.png").stat().st_size > 10_000


def test_evaluate_on_other_data_and_bare_model_folder(compose_train, compose_eval, tmp_path):
    """`data=text_files` on a bare model folder (no training config): the data node still resolves."""
    train(compose_train("trainer.max_steps=2", "trainer.val_check_interval=2"))
    other = tmp_path / "other.txt"
    other.write_text("ANNA:\nthe river runs cold.\n\n" * 50)
    cfg = compose_eval(
        f"run={tmp_path / 'run' / 'model'}",
        "data=text_files",
        f"data.corpus.paths=[{other}]",
        "num_samples=0",
        f"paths.cache_dir={tmp_path / 'cache'}",
    )
    results = evaluate_run(cfg)
    assert results["val/loss"] > 0 and "samples" not in results
    assert (tmp_path / "run" / "model" / "eval.json").exists()


def test_model_folder_without_tokenizer_is_rejected(compose_train, compose_eval, tmp_path):
    train(compose_train("trainer.max_steps=2", "trainer.val_check_interval=2"))
    (tmp_path / "run" / "model" / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        evaluate_run(compose_eval(f"run={tmp_path / 'run'}"))
