"""GRPO against PPO: seconds per iteration and peak memory on the same prompts and the same number of replies.

    OMP_NUM_THREADS=1 python benchmarks/grpo.py [--iterations 6] [--replies 64] [--generations 8]
        [--max-new-tokens 16] [--shape nano] [--reward task] [--micro-batch 32] [--beta 0.04]

Both stages train a random model of the same shape on reversal prompts, each iteration sampling
`--replies` replies: PPO one reply to each of `replies` prompts, GRPO `generations` replies to each of
`replies / generations` prompts, drawn from the same prompt pool. Each stage runs with its own defaults
(PPO: 2 epochs × 2 minibatches of actor and critic steps; GRPO: one step, `--beta` 0.04 so that it
keeps a reference, as PPO does; `--beta 0` builds none). `--reward task` scores with the task's gold
scorer, so PPO holds three networks (policy, reference, critic) and GRPO two (policy, reference);
`--reward model` adds a reward model to both (PPO's four against GRPO's three). Both run at most
`--micro-batch` rows per forward/backward pass (PPO's minibatch of 64 replies is 32 rows; GRPO
accumulates gradients over micro-batches of as many rows for its one update), so activation memory
compares like with like.

Each configuration runs in a fresh process. Time: the median wall time of a training batch (one
iteration), the first one left out. Memory: on a GPU, `torch.cuda.max_memory_allocated`; on the CPU,
the peak resident set size (VmHWM, reset through /proc/self/clear_refs where the kernel allows) minus
the resident size before the stage was built — the networks, optimiser states, activations and caches
the stage adds. The table prints both and GRPO's ratio to PPO.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHAPES = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=64),
    "nano": dict(n_layer=4, n_head=4, n_embd=128),
    "small": dict(n_layer=6, n_head=6, n_embd=384),
}
OPTIM = {"lr": 1e-4, "weight_decay": 0.0, "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True}}


def rss_kib(field: str) -> int:
    """A `/proc/self/status` memory field (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0, `echo 5 > /proc/self/clear_refs`); whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(stage_name: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Train `stage_name` (ppo or grpo) for `args.iterations` iterations in this process; its time and memory."""
    import lightning as L
    import torch

    from minigpt.data.prompts import PromptDataModule
    from minigpt.model.config import ModelConfig
    from minigpt.model.folder import save_model_folder
    from minigpt.model.heads import RewardModel, ScalarHead, save_reward_model
    from minigpt.model.transformer import Transformer
    from minigpt.stages.inputs import prepare_fit
    from minigpt.tasks import get_task
    from minigpt.tokenizer.char import CharTokenizer
    from minigpt.tokenizer.chat import add_chat_tokens

    cuda = torch.cuda.is_available()
    prompts_per_batch = args.replies if stage_name == "ppo" else args.replies // args.generations
    datamodule = PromptDataModule(tasks={"reversal": get_task("reversal")}, num_train=args.replies * 4, num_val=8,
                                  batch_size=prompts_per_batch, seed=0)  # fmt: skip
    tokenizer = CharTokenizer.train("".join(datamodule.documents()))
    add_chat_tokens(tokenizer)
    datamodule.attach_tokenizer(tokenizer)
    torch.manual_seed(0)
    config = ModelConfig(**SHAPES[args.shape], block_size=64, vocab_size=tokenizer.vocab_size)
    save_model_folder(folder / "policy", Transformer(config), tokenizer)
    reward: dict[str, Any] = {"reward": "task"}
    if args.reward == "model":
        save_reward_model(folder / "rm", RewardModel(Transformer(config), ScalarHead(config.n_embd)), tokenizer)
        reward = {"reward": "model", "reward_model": str(folder / "rm")}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    peak_reset = reset_peak_rss()
    base_rss = rss_kib("VmRSS")
    common = dict(model_config=None, optim=OPTIM, init_from=str(folder / "policy"),
                  max_new_tokens=args.max_new_tokens, **reward)  # fmt: skip
    if stage_name == "ppo":
        from minigpt.stages.ppo import PPOStage

        stage: Any = PPOStage(**common, critic_init="policy", micro_batch_size=args.micro_batch)
        steps_per_iteration = 2 * stage.ppo.ppo_epochs * stage.ppo.num_minibatches
    else:
        from minigpt.stages.grpo import GRPOStage

        stage = GRPOStage(**common, num_generations=args.generations, micro_batch_size=args.micro_batch, beta=args.beta)
        steps_per_iteration = stage.grpo.num_iterations * stage.grpo.num_minibatches
    networks = sum(isinstance(m, Transformer) for m in stage.modules())
    times: list[float] = []

    class IterationTimes(L.Callback):
        def on_train_batch_start(self, *a: Any) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *a: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    trainer = L.Trainer(max_steps=args.iterations * steps_per_iteration, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[IterationTimes()], default_root_dir=str(folder / "run"),
                        accelerator="gpu" if cuda else "cpu", devices=1)  # fmt: skip
    prepare_fit(stage, datamodule)
    trainer.fit(stage, datamodule=datamodule)
    if cuda:
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
        memory = "cuda max_memory_allocated"
    else:
        peak_mib = (rss_kib("VmHWM") - base_rss) / 1024
        memory = "peak RSS" + ("" if peak_reset else " (VmHWM not resettable: includes earlier peaks)")
    return {"s_per_iteration": statistics.median(times[1:]), "peak_mib": peak_mib, "networks": networks,
            "iterations": len(times), "memory": memory, "threads": torch.get_num_threads()}  # fmt: skip


def main() -> None:
    """Run PPO and GRPO each in a fresh process and print their time, memory and GRPO/PPO ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--replies", type=int, default=64, help="sampled replies per iteration (both stages)")
    parser.add_argument("--generations", type=int, default=8, help="GRPO's replies per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--shape", default="nano", choices=sorted(SHAPES))
    parser.add_argument("--reward", default="task", choices=["task", "model"])
    parser.add_argument("--beta", type=float, default=0.04, help="GRPO's KL weight; 0 = no reference model")
    parser.add_argument("--micro-batch", type=int, default=32, help="rows per forward/backward pass (both stages)")
    parser.add_argument("--one", choices=["ppo", "grpo"], help=argparse.SUPPRESS)  # a child process's job
    args = parser.parse_args()
    if args.replies % args.generations:
        parser.error(f"--replies {args.replies} must be a multiple of --generations {args.generations}")
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(measure(args.one, args, Path(tmp))))
        return
    results = {}
    for name in ("ppo", "grpo"):
        child = [sys.executable, __file__, "--one", name, *sys.argv[1:]]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])

    from rich.console import Console
    from rich.table import Table

    ppo, grpo = results["ppo"], results["grpo"]
    table = Table(title=f"{args.shape}, {args.replies} replies × ≤{args.max_new_tokens} tokens per iteration "
                        f"(GRPO: {args.replies // args.generations} prompts × {args.generations}), "
                        f"reward={args.reward}, GRPO β={args.beta}, ≤{args.micro_batch} rows per pass, "
                        f"{ppo['threads']} thread(s), "
                        f"{ppo['memory']}")  # fmt: skip
    for column in ("stage", "networks", "s / iteration", "peak MiB"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(name, str(r["networks"]), f"{r['s_per_iteration']:.3f}", f"{r['peak_mib']:.0f}")
    table.add_row("GRPO / PPO", "", f"{grpo['s_per_iteration'] / ppo['s_per_iteration']:.2f}×",
                  f"{grpo['peak_mib'] / ppo['peak_mib']:.2f}×")  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
