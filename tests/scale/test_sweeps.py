"""`hparams_search=lr_optuna`: an Optuna sweep runs its trials and reports the best validation loss."""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_optuna_sweep_of_two_trials_returns_the_best_value(run_train, losses, tmp_path):
    run_train(
        "-m",
        "hparams_search=lr_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
    )
    (sweep,) = (tmp_path / "runs" / "multirun").iterdir()
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trial_losses = [losses(sweep / job, "val/loss")[3] for job in ("0", "1")]
    assert results["best_value"] == pytest.approx(min(trial_losses))
    assert set(results["best_params"]) == {"optim.lr", "optim.warmup_steps", "optim.weight_decay"}
