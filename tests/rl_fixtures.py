"""Shared pieces of the RL stage tests (PPO, GRPO): toy prompts and reward, an end-to-end run, aux-loss capture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from preference_fixtures import base_model_folder


def toy_rl_overrides(tmp_path: Path, stage: str) -> list[str]:
    """Overrides for a tiny `stage=ppo|grpo` run from a base model folder on `say: <word>` prompts, rewarded
    by the count of "a" in the reply (the toy reward a tiny model learns in a few iterations)."""
    folder = base_model_folder(tmp_path / "base")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"say: {w}"}) + "\n" for w in ["ab", "cd", "dab", "bad"] * 10))
    return [
        f"stage={stage}", f"init_from={folder}", "data=prompts", f"data.path={prompts}",
        "stage.reward=count", "stage.count_text=a", "stage.max_new_tokens=4",
    ]  # fmt: skip


def record_aux_losses(monkeypatch: Any, stage_class: type) -> list[Any]:
    """The auxiliary losses (MoE balancing) `stage_class.aux_loss` returns during the test, in order."""
    aux_losses: list[Any] = []
    original = stage_class.aux_loss
    monkeypatch.setattr(
        stage_class, "aux_loss", lambda self, aux: aux_losses.append(original(self, aux)) or aux_losses[-1]
    )
    return aux_losses


def rl_run_trains_resumes_and_plots(
    tmp_path: Path, compose_train: Any, compose_eval: Any, stage: str, steps_per_iteration: int, *extra: str
) -> None:
    """An RL stage (`stage=ppo|grpo`) run through `train()` on a toy count reward: two iterations log the
    validation metrics and write the model folder and samples, a resume continues the iteration count from
    the checkpoint, and `evaluate.py` draws its RL curves."""
    from minigpt.evaluation.report import evaluate_run
    from minigpt.run import train

    overrides = [
        *toy_rl_overrides(tmp_path, stage), "data.val_fraction=0.1", "trainer.val_check_interval=2", "logger=csv",
        *extra,
    ]  # fmt: skip
    metrics = train(compose_train(*overrides, f"trainer.max_steps={2 * steps_per_iteration}", toy_data=False))
    run = tmp_path / "run"
    assert metrics["train/iteration"] == 2 and {"val/reward", "val/kl", "val/reward_init"} <= set(metrics)
    assert (run / "model" / "model.safetensors").exists() and list((run / "samples").glob("step_*.json"))
    last = run / "checkpoints" / "last.ckpt"
    resumed = train(
        compose_train(*overrides, f"trainer.max_steps={3 * steps_per_iteration}", f"ckpt_path={last}", toy_data=False)
    )
    assert resumed["train/iteration"] == 3  # the iteration count came back from the checkpoint
    results = evaluate_run(compose_eval(f"run={run}", "num_samples=0"))
    assert any(p.endswith("rl_curves.png") for p in results["plots"])
