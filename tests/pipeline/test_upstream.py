"""Upstream models: a stage given no init_from / reward model / data gets them from the cache, built once.

The planning tests compose configs and look at the planned cache entries (nothing trains); the
end-to-end tests run `train(cfg)` for `stage=ppo` and `stage=dpo` with nothing given, at tiny sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_config, tiny_run_overrides
from omegaconf import DictConfig, OmegaConf
from preference_fixtures import base_model_folder

from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.model.heads import is_reward_folder
from minigpt.pipeline.cache import build_once, temp_folder
from minigpt.pipeline.upstream import Upstream, with_upstream
from minigpt.run import train

# The short-step mode: every upstream run 3 steps, a handful of pairs, a byte tokenizer (the toy play's
# characters do not cover the tasks') and a one-block model.
TINY = [
    "tokenizer=byte",
    "model.n_layer=1",
    "model.n_head=2",
    "model.n_embd=32",
    "model.block_size=64",
    "upstream.max_steps=3",
    'upstream.overrides=["trainer.enable_progress_bar=false","trainer.enable_model_summary=false",'
    '"callbacks.progress_bar=null","callbacks.samples.num_samples=0","final_samples=0","trainer.limit_val_batches=1"]',
    "upstream.recipes.pairs.n=8",
    "upstream.recipes.pairs.k=2",
    "upstream.recipes.pairs.max_new_tokens=4",
    "upstream.recipes.pairs.with_answer=true",  # a 3-step model's samples tie; the reference answer breaks ties
]


def compose(tmp_path: Path, *overrides: str, run: str = "run", toy_data: bool = True) -> DictConfig:
    """A tiny run on the toy play (or on data it names) writing into `tmp_path/run`, caches under `tmp_path/cache`."""
    base = tiny_run_overrides(tmp_path) if toy_data else [f"paths.cache_dir={tmp_path / 'cache'}"]
    return compose_config("train", [*base, *TINY, *overrides], tmp_path / run)


def planned(cfg: DictConfig) -> tuple[DictConfig, dict[str, Path]]:
    """The run's config with its slots filled and the cache entry of every product, without building any."""
    upstream = Upstream(cfg)
    filled = upstream.plan()
    return filled, {name: product.entry for name, product in upstream.products.items()}


def test_cache_key_follows_the_model_and_recipes_not_the_run_settings(tmp_path):
    _, base = planned(compose(tmp_path, "stage=ppo"))
    assert set(base) == {"pretrain", "sft", "pairs", "reward"}
    assert all(entry.parent == tmp_path / "cache" / "upstream" for entry in base.values())

    # Where the run writes, how long it trains and how it logs do not touch what is built upstream.
    _, same = planned(
        compose(tmp_path, "stage=ppo", "trainer.max_steps=7", "logger=tensorboard", "paths.runs_dir=elsewhere",
                "task_name=other", run="another_run")
    )  # fmt: skip
    assert same == base
    # Nor does where the cache lives: a product enters its consumers' keys by its own key, not its path.
    _, moved = planned(compose(tmp_path, "stage=ppo", f"upstream.cache_dir={tmp_path / 'moved'}"))
    assert {name: entry.name for name, entry in moved.items()} == {name: entry.name for name, entry in base.items()}

    # The model config changes every product.
    _, wider = planned(compose(tmp_path, "stage=ppo", "model.n_embd=48"))
    assert all(wider[name] != base[name] for name in base)

    # A recipe's change rebuilds that product and what is built from it, not what it is built from.
    _, reward_lr = planned(
        compose(tmp_path, "stage=ppo", 'upstream.recipes.reward.overrides=["stage=reward","optim.lr=1e-4"]')
    )
    assert [name for name in base if reward_lr[name] != base[name]] == ["reward"]
    _, more_sft = planned(compose(tmp_path, "stage=ppo", "upstream.max_steps=4"))
    assert all(more_sft[name] != base[name] for name in base)  # every run is longer
    _, more_pairs = planned(compose(tmp_path, "stage=ppo", "upstream.recipes.pairs.k=3"))
    assert [name for name in base if more_pairs[name] != base[name]] == ["pairs", "reward"]


def test_each_stage_gets_the_data_and_models_it_needs(tmp_path):
    ppo, products = planned(compose(tmp_path, "stage=ppo", "data.batch_size=8", "+data.num_val=8"))
    assert ppo.data._target_.endswith("PromptDataModule") and list(ppo.data.tasks) == ["sentiment"]
    assert ppo.data.batch_size == 8 and ppo.data.num_val == 8  # the command line's data options that apply
    assert ppo.init_from == str(products["sft"] / "model")
    assert ppo.stage.reward_model == str(products["reward"] / "model")

    # A verifiable reward needs no reward model: arithmetic prompts, scored by the task.
    verifiable, products = planned(compose(tmp_path, "stage=ppo", "stage.reward=task"))
    assert list(verifiable.data.tasks) == ["arithmetic"] and not verifiable.stage.reward_model
    assert set(products) == {"pretrain", "sft"}
    # The run's own prompts choose the task.
    own, _ = planned(compose(tmp_path, "stage=ppo", "data=prompts/arithmetic", "stage.reward=model", toy_data=False))
    assert list(own.data.tasks) == ["arithmetic"] and own.data.num_train == 5000

    dpo, products = planned(compose(tmp_path, "stage=dpo"))
    assert dpo.data._target_.endswith("PreferenceDataModule")
    assert dpo.data.path == str(products["pairs"] / "pairs.jsonl") and set(products) == {"pretrain", "sft", "pairs"}

    sft, products = planned(compose(tmp_path, "stage=sft"))
    assert sft.data._target_.endswith("ChatDataModule") and sft.data.tasks.sentiment.tone == "mixed"
    assert set(products) == {"pretrain"}

    # Nothing is built for a stage that needs nothing, or that was given everything it needs; data of the
    # wrong kind that the user chose is left for the stage to refuse (with the data to use instead).
    pretrain = compose(tmp_path, "stage=pretrain")
    assert with_upstream(pretrain) is pretrain
    folder = base_model_folder(tmp_path / "mine")
    chosen = compose(tmp_path, "stage=ppo", f"init_from={folder}", "data=tasks/arithmetic", "stage.reward=task",
                     toy_data=False)  # fmt: skip
    assert with_upstream(chosen) is chosen


def test_a_given_model_is_used_and_keys_what_is_built_from_it(tmp_path):
    folder = base_model_folder(tmp_path / "mine")
    cfg, products = planned(compose(tmp_path, "stage=ppo", f"init_from={folder}"))
    assert cfg.init_from == str(folder) and "pretrain" not in products and products["sft"] is None
    assert set(products) == {"sft", "pairs", "reward"}

    # Retrained into the same folder: the pairs and the reward model built from it change.
    model, tokenizer = load_model_folder(folder)
    for parameter in model.parameters():
        parameter.data.add_(0.01)
    save_model_folder(folder, model, tokenizer)
    _, retrained = planned(compose(tmp_path, "stage=ppo", f"init_from={folder}"))
    assert retrained["pairs"] != products["pairs"] and retrained["reward"] != products["reward"]


def test_a_killed_build_is_never_reused(tmp_path):
    entry = tmp_path / "cache" / "pretrain-0123"
    entry.parent.mkdir(parents=True)
    # A build killed half-way: its process is gone, its temporary folder holds a partial model.
    script = (
        "import time, sys; from pathlib import Path; from minigpt.pipeline.cache import build_once\n"
        "def build(folder):\n"
        "    (folder / 'model').mkdir(); (folder / 'model' / 'part').write_text('x'); print('started', flush=True)\n"
        "    time.sleep(60)\n"
        f"build_once(Path({str(entry)!r}), build)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None and child.stdout.readline().strip() == "started"
    child.kill()
    child.wait()
    left = temp_folder(entry, child.pid)
    assert (left / "model" / "part").exists() and not entry.exists()

    assert build_once(entry, lambda folder: (folder / "model").mkdir()) is True
    assert (entry / "model").is_dir() and not (entry / "model" / "part").exists() and not left.exists()
    assert build_once(entry, lambda folder: pytest.fail("an existing entry is rebuilt")) is False


def test_a_failed_build_leaves_nothing(tmp_path):
    entry = tmp_path / "pairs-abc"

    def fail(folder: Path) -> None:
        (folder / "pairs.jsonl").write_text("{}")
        raise RuntimeError("sampling failed")

    with pytest.raises(RuntimeError, match="sampling failed"):
        build_once(entry, fail)
    assert list(tmp_path.iterdir()) == []


def entries(cache: Path) -> dict[str, int]:
    """Every finished cache entry and the time its folder last changed."""
    return {
        path.name: path.stat().st_mtime_ns for path in (cache / "upstream").iterdir() if not path.name.startswith(".")
    }


@pytest.mark.slow
def test_ppo_with_nothing_given_builds_its_chain_once(tmp_path, capsys):
    ppo = [
        "stage=ppo",
        "stage.max_new_tokens=4",
        "trainer.max_steps=8",
        "trainer.val_check_interval=2",
    ]
    cfg = compose(tmp_path, *ppo)
    _, products = planned(cfg)
    stale = temp_folder(products["pretrain"], pid=2**22 + 1)  # above Linux's pid_max: a process that is gone
    (stale / "model").mkdir(parents=True)

    metrics = train(cfg)
    assert "val/reward_init" in metrics and (tmp_path / "run" / "model" / "model.safetensors").exists()
    built = entries(tmp_path / "cache")
    assert sorted(name.split("-")[0] for name in built) == ["pairs", "pretrain", "reward", "sft"]
    assert not stale.exists()  # the killed build's folder was removed, the entry built afresh
    assert is_reward_folder(products["reward"] / "model") and (products["pairs"] / "pairs.jsonl").stat().st_size > 0
    out = capsys.readouterr().out
    assert out.count("upstream pretrain: building") == 1 and "data=prompts/sentiment" in out

    # A second run (another run folder, fewer steps) reuses every upstream product and says so.
    again = compose(tmp_path, *ppo[:-2], "trainer.max_steps=4", run="second")
    train(again)
    out = capsys.readouterr().out
    assert entries(tmp_path / "cache") == built
    assert "building" not in out and all(f"upstream {name}: reusing" in out for name in products)
    assert (tmp_path / "second" / "model" / "model.safetensors").exists()


@pytest.mark.slow
def test_dpo_with_nothing_given_trains_on_pairs_of_its_sft_model(tmp_path):
    cfg = compose(tmp_path, "stage=dpo", "stage.max_new_tokens=4", "stage.num_samples=1",
                  "trainer.max_steps=2", "trainer.val_check_interval=2")  # fmt: skip
    metrics = train(cfg)
    _, products = planned(cfg)
    assert sorted(name.split("-")[0] for name in entries(tmp_path / "cache")) == ["pairs", "pretrain", "sft"]
    assert {"val/accuracy", "val/margin"} <= set(metrics), metrics  # DPO's implicit-reward metrics on the pairs
    pairs = (products["pairs"] / "pairs.jsonl").read_text().splitlines()
    assert pairs and all('"task": "sentiment"' in line for line in pairs)
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    assert OmegaConf.load(products["sft"] / ".hydra" / "config.yaml").init_from == str(products["pretrain"] / "model")
