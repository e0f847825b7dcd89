"""Where a PPO iteration's time goes: generation, scoring, experience, optimisation — on a tiny model.

    OMP_NUM_THREADS=1 python benchmarks/ppo.py [--iterations 12] [--batch 32] [--max-new-tokens 24]
        [--shapes nano tiny] [--critic separate shared] [--rollouts eager compiled]

A random model of the gpt_nano shape (4 layers, 128 wide; `tiny`: 2 layers, 64 wide) answers reversal
prompts with the task's gold scorer as the reward. A random model never says `<|end|>`, so every reply
runs to `--max-new-tokens`: the worst case for generation. Each iteration's phases are timed by the
stage itself (`time/*` metrics); the first iteration (warm-up) is left out, the median of the rest is
shown. The table shows milliseconds per iteration and each phase's share, so the next optimisation
target is the biggest share. Critic: a separate network (default) or a value head on the policy's trunk (`shared`).
Rollouts: the eager decoding loop (default) or `stage.compile_rollouts` (compiled decoding steps; the
compiling happens in the first, excluded iteration).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from rich.console import Console
from rich.table import Table

from minigpt.data.prompts import PromptDataModule
from minigpt.model.config import ModelConfig
from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.stages.inputs import prepare_fit
from minigpt.stages.ppo import PPOStage
from minigpt.tasks import get_task
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens

SHAPES = {"nano": dict(n_layer=4, n_head=4, n_embd=128), "tiny": dict(n_layer=2, n_head=2, n_embd=64)}
PHASES = ("generate", "score", "experience", "optimise")
OPTIM = {"lr": 1e-4, "weight_decay": 0.0, "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True}}


class PhaseTimes(L.Callback):
    """Collects the stage's `time/<phase>` metrics after every training batch (= PPO iteration)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """Record this iteration's phase times."""
        self.rows.append({p: float(trainer.callback_metrics[f"time/{p}"]) for p in PHASES})


def run(
    shape: str, critic: str, rollouts: str, iterations: int, batch: int, max_new_tokens: int, folder: Path
) -> dict[str, float]:
    """Median seconds per phase over `iterations` PPO iterations (the first one excluded).

    The median, not the mean: with compiled rollouts, the first batch that shrinks to one running row
    compiles once more (a one-off pause of seconds) in whichever iteration that happens.
    """
    datamodule = PromptDataModule(tasks={"reversal": get_task("reversal")}, num_train=batch * 4, num_val=8,
                                  batch_size=batch, seed=0)  # fmt: skip
    tokenizer = CharTokenizer.train("".join(datamodule.documents()))
    add_chat_tokens(tokenizer)
    datamodule.attach_tokenizer(tokenizer)
    torch.manual_seed(0)
    config = ModelConfig(**SHAPES[shape], block_size=64, vocab_size=tokenizer.vocab_size)
    save_model_folder(folder / shape, Transformer(config), tokenizer)
    stage = PPOStage(model_config=None, optim=OPTIM, init_from=str(folder / shape), reward="task",
                     share_trunk=critic == "shared", max_new_tokens=max_new_tokens,
                     compile_rollouts=rollouts == "compiled")  # fmt: skip
    prepare_fit(stage, datamodule)
    times = PhaseTimes()
    steps = iterations * 2 * stage.ppo.ppo_epochs * stage.ppo.num_minibatches
    trainer = L.Trainer(max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[times],
                        default_root_dir=str(folder / "run"))  # fmt: skip
    trainer.fit(stage, datamodule=datamodule)
    return {p: statistics.median(row[p] for row in times.rows[1:]) for p in PHASES}


def main() -> None:
    """Time every (shape, critic) combination and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--shapes", nargs="+", default=["nano"], choices=sorted(SHAPES))
    parser.add_argument("--critic", nargs="+", default=["separate", "shared"], choices=["separate", "shared"])
    parser.add_argument("--rollouts", nargs="+", default=["eager"], choices=["eager", "compiled"])
    args = parser.parse_args()
    table = Table(title=f"PPO iteration: {args.batch} prompts × {args.max_new_tokens} new tokens, "
                        f"{torch.get_num_threads()} thread(s)")  # fmt: skip
    for column in ("model", "critic", "rollouts", *[f"{p} ms" for p in PHASES], "total ms", "largest share"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            for critic, rollouts in itertools.product(args.critic, args.rollouts):
                t = run(shape, critic, rollouts, args.iterations, args.batch, args.max_new_tokens, Path(tmp))
                total = sum(t.values())
                top = max(t, key=t.__getitem__)
                table.add_row(shape, critic, rollouts, *[f"{1000 * t[p]:.0f}" for p in PHASES],
                              f"{1000 * total:.0f}", f"{top} {100 * t[top] / total:.0f}%")  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
