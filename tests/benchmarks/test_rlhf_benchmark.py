"""`benchmarks/rlhf.py --quick` on a tiny model writes a table row for every method and the gold-against-KL plot,
with each row's bookkeeping right: reward calls, models held, the SFT model's KL to itself, best-of-N's KL."""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from preference_fixtures import reward_model_folder

from minigpt.model.config import ModelConfig
from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.pipeline.upstream import compose_train
from minigpt.tasks import get_task
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("rlhf_benchmark", ROOT / "benchmarks" / "rlhf.py")
rlhf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rlhf)


def tiny_arithmetic_model(path: Path) -> Path:
    """A random 2-layer model whose char tokenizer (with the chat tokens) covers the arithmetic task."""
    task = get_task("arithmetic")
    text = "".join(ex.prompt + ex.answer for split in ("train", "test") for ex in task.examples(split, 200))
    tokenizer = CharTokenizer.train(text + "0123456789")
    add_chat_tokens(tokenizer)
    torch.manual_seed(0)
    config = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=64, vocab_size=tokenizer.vocab_size)
    return save_model_folder(path, Transformer(config), tokenizer)


def expected_reward_calls(config: dict, name: str) -> int:
    """Replies the reward scores in a --quick run, from the composed config: one per prompt per PPO iteration
    (2 (actor, critic) × epochs × minibatches optimiser steps), G per prompt per GRPO iteration (passes ×
    minibatches optimiser steps)."""
    cfg = compose_train(rlhf.train_overrides(config, rlhf.settings(config, True, config["methods"][name]), True))
    if name == "ppo":
        iterations = cfg.trainer.max_steps // (2 * cfg.stage.ppo_epochs * cfg.stage.num_minibatches)
        return iterations * cfg.data.batch_size
    iterations = cfg.trainer.max_steps // (cfg.stage.num_iterations * cfg.stage.num_minibatches)
    return iterations * cfg.data.batch_size * cfg.stage.num_generations


@pytest.mark.slow
def test_quick_benchmark_writes_every_methods_row(tmp_path):
    sft = tiny_arithmetic_model(tmp_path / "sft")
    out = tmp_path / "bench.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "rlhf.py"), "--quick", "--sft", str(sft),
               "--workdir", str(tmp_path / "work"), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load((ROOT / "benchmarks" / "rlhf.yaml").read_text())
    methods = list(config["methods"])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    assert "sampled reward" not in rows.pop(0)  # no reward model: no reward column
    assert [row.split(" | ")[0].strip("| ") for row in rows] == methods
    cells = {row.split(" | ")[0].strip("| "): row.split(" | ") for row in rows}
    for name in ("sft", "ppo", "grpo", "dr_grpo", "rloo"):  # these always train and measure
        assert "—" not in cells[name][1:8] and "crashed" not in cells[name][-1], cells[name]
    # Each method ran in its own forked process, which kept its log and its row.
    assert all((tmp_path / "work" / name / "log.txt").exists() for name in methods)
    row = {name: yaml.safe_load((tmp_path / "work" / name / "row.json").read_text()) for name in methods}
    # The SFT model against itself: KL 0, no reward call. Best-of-n: the analytic KL, n calls per test prompt.
    assert abs(row["sft"]["KL to SFT (nats/reply)"]) < 1e-4 and row["sft"]["reward calls"] == 0
    n, prompts = config["methods"]["best_of_n"]["quick"]["n"], config["eval"]["quick"]["sampled_prompts"]
    assert row["best_of_n"]["KL to SFT (nats/reply)"] == pytest.approx(math.log(n) - (n - 1) / n)
    assert row["best_of_n"]["reward calls"] == n * prompts
    # Counted reward calls follow from the budgets; models held: policy + reference (+ PPO's critic), none
    # for Dr. GRPO's reference (β = 0 builds none).
    for name, models in (("ppo", 3), ("grpo", 2), ("dr_grpo", 1), ("rloo", 2)):
        assert row[name]["reward calls"] == expected_reward_calls(config, name), name
        assert row[name]["models held"] == models, name
    # A random model answers no sum: the preference methods find no pairs and ReST keeps no reply — said so.
    for name in ("dpo", "ipo"):
        assert "no pairs" in cells[name][-1] or cells[name][2] != "—", cells[name]
    for name in ("rest", "rest_em"):
        assert "kept no reply" in cells[name][-1] or cells[name][2] != "—", cells[name]
    assert out.with_suffix(".png").stat().st_size > 0


@pytest.mark.slow
def test_quick_benchmark_with_a_reward_model(tmp_path):
    """`--reward-model`: the reward model labels the pairs, picks best-of-n's reply and rewards the RL methods;
    gold only judges, and every row shows the reward model's score of its sampled replies."""
    sft = tiny_arithmetic_model(tmp_path / "sft")
    rm = reward_model_folder(tmp_path / "rm", sft)
    out = tmp_path / "bench.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "rlhf.py"), "--quick", "--sft", str(sft),
               "--reward-model", str(rm), "--methods", "sft,best_of_n,dpo,grpo",
               "--workdir", str(tmp_path / "work"), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load((ROOT / "benchmarks" / "rlhf.yaml").read_text())
    row = {
        name: yaml.safe_load((tmp_path / "work" / name / "row.json").read_text())
        for name in ("sft", "best_of_n", "dpo", "grpo")
    }
    assert all(isinstance(r.get("sampled reward"), float) for r in row.values()), row
    assert "sampled reward" in out.read_text().splitlines()[4]  # the table's header has the column
    # A random model never answers right, yet its replies get different rewards: DPO finds pairs and trains
    # (the gold scorer alone gives none, test above) on every prompt, n × k replies scored.
    pairs = config["methods"]["dpo"]["pairs"]["quick"]
    assert len((tmp_path / "work" / "dpo" / "pairs.jsonl").read_text().splitlines()) == pairs["n"]
    assert row["dpo"]["reward calls"] == pairs["n"] * pairs["k"] and "note" not in row["dpo"], row["dpo"]
    # GRPO's reward calls went to the reward model, which it holds beside the policy and the reference.
    assert row["grpo"]["reward calls"] == expected_reward_calls(config, "grpo")
    assert row["grpo"]["models held"] == 3
    # Best-of-n keeps the reward model's favourite of n replies: on average above one sample's reward.
    assert row["best_of_n"]["sampled reward"] > row["sft"]["sampled reward"]


def test_reward_quantiles_are_thresholds_on_the_reward_models_scale(tmp_path):
    """`--reward-quantiles` (ReST's thresholds for a reward model): the quantiles of the reward model's scores
    of the SFT model's samples, so the 0.75 one keeps a quarter of those replies and the levels rise."""
    from minigpt.inference.config import GenerationConfig
    from minigpt.model.folder import load_model_folder
    from minigpt.model.heads import load_reward_model
    from minigpt.rl.rollout import sample_rollouts

    sft = tiny_arithmetic_model(tmp_path / "sft")
    rm = reward_model_folder(tmp_path / "rm", sft)
    prompts = [ex.prompt for ex in get_task("arithmetic").examples("train", 16)]
    q = rlhf.reward_quantiles(str(sft), str(rm), prompts, 4, 6, 0, [0.0, 0.5, 0.75, 1.0])
    model, tokenizer = load_model_folder(sft)
    config = GenerationConfig(max_new_tokens=6, temperature=1.0)
    rollouts = sample_rollouts(model, tokenizer, prompts, config, 4, torch.Generator().manual_seed(0))
    scores = torch.cat([load_reward_model(rm)(r.prompts, r.completions) for r in rollouts])
    assert q[0] == pytest.approx(scores.min().item()) and q[3] == pytest.approx(scores.max().item())
    assert q[0] < q[1] < q[2] < q[3]
    assert (scores > q[2]).float().mean().item() == pytest.approx(0.25, abs=1 / 64 + 1e-6)


@pytest.mark.parametrize("config_name", ["rlhf.yaml", "rlhf_sentiment.yaml"])
def test_every_methods_config_fits_its_task(config_name):
    """Each trained method of a task's config composes to prompts of that task and replies of the config's length,
    and asks for no more evaluation prompts than the task has (ReST's validation once asked 200 of 112)."""
    config = yaml.safe_load((ROOT / "benchmarks" / config_name).read_text())
    task = get_task(config["task"])
    task.examples("test", max(config["eval"]["greedy_prompts"], config["eval"]["sampled_prompts"]))
    for name, method in config["methods"].items():
        if "overrides" not in method:
            continue
        cfg = compose_train(rlhf.train_overrides(config, rlhf.settings(config, False, method), False))
        assert cfg.stage.max_new_tokens == config["max_new_tokens"], name
        if "pairs" in method:
            task.examples("train", method["pairs"]["n"])  # distinct training prompts for the pairs
            continue
        assert list(cfg.data.tasks) == [config["task"]], name
        if cfg.stage.get("eval_prompts"):
            task.examples("val", cfg.stage.eval_prompts)
