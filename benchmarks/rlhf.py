"""Every alignment method from one SFT model, judged by one gold scorer: a table and a gold-against-KL plot.

    OMP_NUM_THREADS=2 python benchmarks/rlhf.py --sft /path/to/sft/model [--quick] [--methods grpo,rest_em]
        [--config benchmarks/rlhf.yaml] [--workdir /tmp/rlhf] [--out docs/rlhf_benchmark.md] [--seed 1]
    python benchmarks/rlhf.py --config benchmarks/rlhf_sentiment.yaml --sft <sft> --reward-model <rm>
        --reward-quantiles 0.5,0.9   # ReST thresholds: quantiles of the reward model on SFT samples

Methods (settings in benchmarks/rlhf.yaml, one entry each): the SFT model itself; best-of-N sampling; DPO
and IPO on pairs of the SFT model's own samples labelled by the gold scorer; PPO; GRPO; Dr. GRPO; RLOO;
ReST; ReST-EM — all on the task's prompts with the task's gold scorer as the reward (a verifiable reward),
or with a learned reward model as the reward (`reward_model` in the config or `--reward-model`): then the
pairs, best-of-N's pick and every trained method's reward come from the reward model, the gold scorer only
judges, and the table's `sampled reward` column (the reward model's mean score of the sampled test replies)
shows reward hacking as reward up with gold flat (Gao et al. 2022).

Each method runs in a process of its own, so that its peak memory is its own: the peak resident set size
(`ru_maxrss`, which includes the ~0.4 GB of Python, torch and Lightning) right after training, before
evaluation. The processes are forked from a `multiprocessing` fork server that has imported torch,
Lightning and minigpt once (`PRELOAD`): a fresh interpreter spends 5–10 s on those imports, more than a
`--quick` method's whole run. A method's output goes to `<workdir>/<method>/log.txt`.
The child also counts the models its stage holds (the `Transformer`s among its modules: policy, reference,
critic, reward model), the replies the reward scored inside training steps (validation excluded; for
DPO/IPO the pairs' k samples per prompt; for best-of-N its N per test prompt), and its training wall time.
Then it evaluates on the task's test prompts: greedy gold (exact-match for exact tasks), and the gold score
of replies sampled at temperature 1 with their KL to the SFT model, Σₜ log π(yₜ) − log π_SFT(yₜ) per reply
(`minigpt.evaluation.gold`). Best-of-N has no greedy reply; its KL is the analytic log N − (N − 1)/N
(Stiennon et al. 2020, App. G.3; Hilton's bound). A method that fails (e.g. ReST keeping no reply)
gets a row with the one-sentence reason instead of numbers.

The parent writes the Markdown table (with the commands and the machine) to `--out` and the scatter of
sampled gold against KL next to it (`<out>.png` → docs/rlhf_benchmark.png).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["method", "greedy gold", "sampled gold", "KL to SFT (nats/reply)", "wall time (s)", "peak RSS (MB)",
           "models held", "reward calls", "sampled reward", "note"]  # fmt: skip
# Imported once by the fork server every method's process is forked from (`__main__` is this script).
PRELOAD = ["__main__", "torch", "lightning", "minigpt.run", "minigpt.evaluation.gold", "minigpt.evaluation.tasks",
           "minigpt.data.preference_pairs", "minigpt.rl.rollout", "minigpt.rl.rewards", "minigpt.tasks"]  # fmt: skip


def settings(config: dict[str, Any], quick: bool, node: dict[str, Any]) -> dict[str, Any]:
    """A settings node with its `quick` values (a dict) laid over it under --quick; a list of quick overrides
    (a trained method's) stays for `train_overrides`."""
    if not isinstance(node.get("quick"), dict):
        return dict(node)
    out = {k: v for k, v in node.items() if k != "quick"}
    return out | node["quick"] if quick else out


def train_overrides(config: dict[str, Any], method: dict[str, Any], quick: bool) -> list[str]:
    """`common` + the method's overrides (+ the quick ones under --quick); later overrides win."""
    overrides = list(config["common"]) + list(method.get("overrides", []))
    return overrides + (list(config["quick"]) + list(method.get("quick", [])) if quick else [])


class Counter:
    """Replies the reward scored inside training steps (validation's scoring is not counted)."""

    def __init__(self) -> None:
        self.calls = 0
        self.training = False
        self.stage: Any = None

    def install(self) -> None:
        """Wrap the reward classes' calls and `Trainer.fit` (to find the stage and wrap its training step)."""
        import lightning as L

        from minigpt.rl.rewards import ModelReward, TaskReward

        counter = self
        for cls, name in ((TaskReward, "__call__"), (ModelReward, "forward")):
            original = getattr(cls, name)

            def counted(self: Any, prompts: Any, completions: Any, tasks: Any, _original: Any = original) -> Any:
                counter.calls += len(completions) if counter.training else 0
                return _original(self, prompts, completions, tasks)

            setattr(cls, name, counted)
        fit = L.Trainer.fit

        def fit_and_count(trainer: Any, stage: Any, *args: Any, **kwargs: Any) -> Any:
            counter.stage = stage
            step = type(stage).training_step

            def training_step(module: Any, *a: Any, **k: Any) -> Any:
                counter.training = True
                try:
                    return step(module, *a, **k)
                finally:
                    counter.training = False

            type(stage).training_step = training_step
            return fit(trainer, stage, *args, **kwargs)

        L.Trainer.fit = fit_and_count  # type: ignore[method-assign]


def compose(overrides: list[str], folder: Path) -> Any:
    """`train.yaml` composed with `overrides`, writing into `folder` (as a Hydra run would)."""
    from omegaconf import open_dict

    from minigpt.pipeline.upstream import compose_train

    cfg = compose_train(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.trainer.default_root_dir = str(folder)
    return cfg


class RewardModelTask:
    """The task with a reward model's score as `score` (names, prompts and answers stay the task's): what ranks
    best-of-N's replies and labels the preference pairs when the benchmark's reward is a reward model."""

    def __init__(self, task: Any, reward_model: str) -> None:
        from minigpt.model.heads import load_reward_model

        self.task, self.scorer = task, load_reward_model(reward_model)

    def score(self, prompt: str, completion: str) -> float:
        """The reward model's score of one reply."""
        return float(self.scorer([prompt], [completion])[0])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)


def make_pairs_file(sft: str, task: Any, pairs: dict[str, Any], path: Path, max_new_tokens: int, seed: int) -> int:
    """Preference pairs from the SFT model's own samples (best vs worst by the reward: the gold scorer, or a
    `RewardModelTask`); the number of replies scored."""
    from minigpt.data.preference_pairs import make_pairs
    from minigpt.utils.errors import ConfigError
    from minigpt.utils.io import atomic_write_text

    made = make_pairs(sft, task, pairs["n"], k=pairs["k"], max_new_tokens=max_new_tokens, seed=seed)
    if not made:
        raise ConfigError(f"none of {pairs['n']} prompts got {pairs['k']} replies of different rewards: no pairs.")
    atomic_write_text(path, "".join(json.dumps(p) + "\n" for p in made))
    return pairs["n"] * pairs["k"]


def best_of_n(
    sft: str, task: Any, reward: Any, n: int, prompts: list[str], max_new_tokens: int, seed: int
) -> dict[str, Any]:
    """Gold score of the best of `n` sampled replies per prompt by `reward` (the task, or a `RewardModelTask`)."""
    import torch

    from minigpt.inference.config import GenerationConfig
    from minigpt.model.folder import load_model_folder
    from minigpt.rl.rollout import sample_rollouts

    model, tokenizer = load_model_folder(sft)
    generator = torch.Generator().manual_seed(seed)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=1.0)
    gold, rewards = [], []
    for rollout in sample_rollouts(model, tokenizer, prompts, config, n, generator):
        rows = list(zip(rollout.prompts, rollout.completions))
        scores = [reward.score(p, c) for p, c in rows]
        for i in range(0, len(rows), n):  # the n replies of one prompt; keep the reward's pick
            pick = max(range(i, i + n), key=scores.__getitem__)
            gold.append(task.score(*rows[pick]))
            rewards.append(scores[pick])
    row = {"sampled gold": sum(gold) / len(gold), "KL to SFT (nats/reply)": math.log(n) - (n - 1) / n,
           "reward calls": n * len(prompts), "models held": 1 if reward is task else 2}  # fmt: skip
    return row | ({} if reward is task else {"sampled reward": sum(rewards) / len(rewards)})


def reward_quantiles(
    sft: str, reward_model: str, prompts: list[str], n: int, max_new_tokens: int, seed: int, qs: list[float]
) -> list[float]:
    """Quantiles `qs` of the reward model's scores of `n` replies per prompt sampled from the SFT model at
    temperature 1: thresholds on the reward model's own scale (ReST's τ), set from training prompts only."""
    import torch

    from minigpt.inference.config import GenerationConfig
    from minigpt.model.folder import load_model_folder
    from minigpt.model.heads import load_reward_model
    from minigpt.rl.rollout import sample_rollouts

    model, tokenizer = load_model_folder(sft)
    scorer = load_reward_model(reward_model)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=1.0)
    generator = torch.Generator().manual_seed(seed)
    scores = torch.cat([scorer(r.prompts, r.completions).float().flatten()
                        for r in sample_rollouts(model, tokenizer, prompts, config, n, generator)])  # fmt: skip
    return torch.quantile(scores, torch.tensor(qs)).tolist()


def evaluate(
    model_folder: str, sft: str, task: Any, ev: dict[str, Any], max_new_tokens: int, reward: Any = None
) -> dict[str, float]:
    """Greedy gold, sampled gold and KL to the SFT model on the task's test prompts; given a reward model
    (`RewardModelTask`), its mean score of the same sampled replies (same seed) as `sampled reward`."""
    from functools import partial

    from minigpt.evaluation.gold import gold_eval
    from minigpt.evaluation.tasks import evaluate_tasks
    from minigpt.model.folder import load_model_folder
    from minigpt.rl.rollout import frozen_logprobs

    model, tokenizer = load_model_folder(model_folder)
    reference, _ = load_model_folder(sft)
    greedy = evaluate_tasks(model, tokenizer, {task.name: task}, "test", ev["greedy_prompts"])[task.name]
    prompts = [ex.prompt for ex in task.examples("test", ev["sampled_prompts"])]
    sampled = gold_eval(model, tokenizer, task, prompts, partial(frozen_logprobs, reference), ev["sampled_replies"],
                        max_new_tokens)  # fmt: skip
    row = {"greedy gold": greedy, "sampled gold": sampled["score"], "KL to SFT (nats/reply)": sampled["kl"]}
    if reward is not None:
        row["sampled reward"] = gold_eval(model, tokenizer, reward, prompts, None, ev["sampled_replies"],
                                          max_new_tokens)["score"]  # fmt: skip
    return row


def run_method(name: str, args: argparse.Namespace) -> None:
    """Run one method in this process and write its row to `<workdir>/<method>/row.json`."""
    import yaml

    from minigpt.model.transformer import Transformer
    from minigpt.tasks import get_task
    from minigpt.utils.errors import ConfigError

    config = yaml.safe_load(Path(args.config).read_text())
    method = settings(config, args.quick, config["methods"][name])
    ev = settings(config, args.quick, config["eval"])
    folder = Path(args.workdir) / name
    task = get_task(config["task"])
    max_new_tokens = int(config["max_new_tokens"])
    row: dict[str, Any] = {"method": name}
    reward_model = args.reward_model  # main() filled it from the config when the command line did not
    reward = RewardModelTask(task, reward_model) if reward_model else None
    counter = Counter()
    counter.install()
    start = time.perf_counter()
    try:
        if name == "sft":
            row |= {"models held": 1, "reward calls": 0}
            row |= evaluate(args.sft, args.sft, task, ev, max_new_tokens, reward)
        elif "n" in method:  # best-of-N: no training, N samples per test prompt
            prompts = [ex.prompt for ex in task.examples("test", ev["sampled_prompts"])]
            row |= best_of_n(args.sft, task, reward or task, method["n"], prompts, max_new_tokens, args.seed or 0)
        else:
            from minigpt.run import train

            overrides = [f"init_from={args.sft}", *train_overrides(config, method, args.quick)]
            overrides += [] if args.seed is None else [f"seed={args.seed}"]
            if "pairs" in method:
                pairs = settings(config, args.quick, method["pairs"])
                pairs_file = folder / "pairs.jsonl"
                labeller = reward or task
                counter.calls = make_pairs_file(args.sft, labeller, pairs, pairs_file, max_new_tokens, args.seed or 0)
                overrides += ["data=preferences", f"data.path={pairs_file}"]
            elif reward_model:
                overrides += ["stage.reward=model", f"stage.reward_model={reward_model}"]
            train(compose(overrides, folder / "run"))
            row["peak RSS (MB)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            row["wall time (s)"] = time.perf_counter() - start
            stage = counter.stage
            row["models held"] = sum(isinstance(m, Transformer) for m in stage.modules())
            row["reward calls"] = counter.calls
            row |= evaluate(str(folder / "run" / "model"), args.sft, task, ev, max_new_tokens, reward)
    except ConfigError as err:
        row["note"] = str(err)
    row.setdefault("wall time (s)", time.perf_counter() - start)
    row.setdefault("peak RSS (MB)", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    (folder / "row.json").write_text(json.dumps(row))


def method_process(name: str, args: argparse.Namespace) -> None:
    """The forked process of one method: its output to `<workdir>/<name>/log.txt`, its row to `row.json`."""
    folder = Path(args.workdir) / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "log.txt", "w") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            run_method(name, args)
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()


def run_methods(names: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each method in a process forked from one warm server (one at a time); a crash becomes a row's note."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    rows = []
    for name in names:
        process = context.Process(target=method_process, args=(name, args), name=f"rlhf-{name}")
        process.start()
        process.join()
        folder = Path(args.workdir) / name
        if process.exitcode != 0 or not (folder / "row.json").exists():
            log = folder / "log.txt"
            last = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            rows.append({"method": name, "note": f"crashed (exit code {process.exitcode}): {last}"})
        else:
            rows.append(json.loads((folder / "row.json").read_text()))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def cell(value: Any) -> str:
    """A table cell: numbers to 3 decimals (counts and seconds whole), missing as —."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_outputs(rows: list[dict[str, Any]], out: Path, command: str, quick: bool) -> None:
    """The Markdown table (with the command and the machine) and the gold-against-KL scatter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from minigpt.utils.io import atomic_write_text

    plot = out.with_suffix(".png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        if row.get("sampled gold") is not None and row.get("KL to SFT (nats/reply)") is not None:
            ax.scatter(row["KL to SFT (nats/reply)"], row["sampled gold"])
            ax.annotate(row["method"], (row["KL to SFT (nats/reply)"], row["sampled gold"]), fontsize=8)
    ax.set_xlabel("KL to the SFT model (nats per reply)")
    ax.set_ylabel("gold score of sampled replies (test)")
    ax.set_title("RLHF benchmark" + (" (--quick)" if quick else ""))
    fig.tight_layout()
    fig.savefig(plot, dpi=120)
    plt.close(fig)
    columns = [c for c in COLUMNS if c != "sampled reward" or any(c in row for row in rows)]  # reward model only
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores visible, torch {torch.__version__}"
    text = (
        "# RLHF benchmark: every method from one SFT model, one gold scorer\n\n"
        f"Written by `{command}` (benchmarks/rlhf.py; settings in benchmarks/rlhf.yaml) on {machine}."
        + (" **--quick: smoke budgets, not results.**" if quick else "")
        + "\n\n" + "\n".join(lines) + "\n\n"
        f"![sampled gold against KL]({plot.name})\n"
    )  # fmt: skip
    atomic_write_text(out, text)


def main() -> None:
    """Run every method (each in a process of its own), then write the table and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft", required=True, help="the SFT model folder every method starts from")
    parser.add_argument("--config", default=str(ROOT / "benchmarks" / "rlhf.yaml"))
    parser.add_argument("--methods", default=None, help="comma-separated subset of the config's methods")
    parser.add_argument("--quick", action="store_true", help="smoke budgets: minutes in all")
    parser.add_argument("--workdir", default="outputs/rlhf_benchmark")
    parser.add_argument("--out", default=str(ROOT / "docs" / "rlhf_benchmark.md"))
    seed_help = "training seed (default train.yaml's); pairs' and best-of-n's samples (default 0); eval uses 0"
    parser.add_argument("--seed", type=int, default=None, help=seed_help)
    reward_help = "a stage=reward model folder as every method's reward (the config's reward_model); gold only judges"
    parser.add_argument("--reward-model", default=None, help=reward_help)
    quantile_help = "print these quantiles (e.g. 0.5,0.75,0.9) of the reward model's scores of the SFT model's samples "
    quantile_help += "on training prompts (--quantile-prompts × 4 replies) and exit: ReST thresholds on its scale"
    parser.add_argument("--reward-quantiles", default=None, help=quantile_help)
    parser.add_argument("--quantile-prompts", type=int, default=256)
    args = parser.parse_args()
    import yaml

    config = yaml.safe_load(Path(args.config).read_text())
    args.reward_model = args.reward_model or config.get("reward_model")  # the one place the two sources meet
    if args.reward_quantiles:
        sys.path.insert(0, str(ROOT))
        from minigpt.tasks import get_task

        if not args.reward_model:
            sys.exit("error: --reward-quantiles needs --reward-model (or reward_model in the config).")
        task = get_task(config["task"])
        prompts = [ex.prompt for ex in task.examples("train", args.quantile_prompts)]
        qs = [float(q) for q in args.reward_quantiles.split(",")]
        values = reward_quantiles(args.sft, args.reward_model, prompts, 4,
                                  int(config["max_new_tokens"]), args.seed or 0, qs)  # fmt: skip
        print(json.dumps(dict(zip(args.reward_quantiles.split(","), [round(v, 4) for v in values]))))
        return

    methods = list(config["methods"])
    chosen = args.methods.split(",") if args.methods else methods
    unknown = sorted(set(chosen) - set(methods))
    if unknown:
        sys.exit(f"error: --methods {unknown} are not in {args.config}; use some of {methods}.")
    args.workdir = str(Path(args.workdir).resolve())
    sys.path.insert(0, str(ROOT))  # the fork server imports this checkout's minigpt
    rows = run_methods(chosen, args)
    write_outputs(rows, Path(args.out), "python benchmarks/rlhf.py " + " ".join(sys.argv[1:]), args.quick)


if __name__ == "__main__":
    main()
