"""Distillation step time with the teacher run every step against its cached top-k (`stage.teacher_cache`).

    OMP_NUM_THREADS=1 python benchmarks/distill_cache.py --student <student model> --teacher <teacher model>
        [--top-k 32] [--steps 100] [--num-train 200]

Two `DistillStage`s start from the same student on the same `tasks/mix` batches (packed rows of 64 tokens,
16 rows); one runs the teacher, the other reads a cache built by one teacher pass. A timed step is the
student's forward, the loss and the backward (the optimizer step is the same in both and left out).
Fairness on a shared machine: the two alternate step by step, so a burst of load from other jobs hits
both alike; the first 5 steps of each are warm-up; medians are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from minigpt.data.chat import ChatDataModule
from minigpt.losses.distill import mixed_loss
from minigpt.losses.lm import IGNORE_INDEX
from minigpt.model.folder import load_model_folder
from minigpt.stages.distill import DistillStage
from minigpt.stages.inputs import prepare_fit
from minigpt.tasks.base import get_task

OPTIM = {"lr": 1e-3, "weight_decay": 0.0, "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True}}
WARMUP = 5


def main() -> None:
    """Build both stages, time alternating steps, print the medians and the saving."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--num-train", type=int, default=200, help="training conversations per task")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, tokenizer = load_model_folder(args.student)
    tasks = {name: get_task(name, seed=1337) for name in ("arithmetic", "reversal", "sorting")}
    dm = ChatDataModule(tasks=tasks, num_train=args.num_train, num_val=16, batch_size=16, pack=True, seq_len=64)
    dm.attach_tokenizer(tokenizer)
    cache = {"teacher_cache": True, "teacher_top_k": args.top_k, "cache_dir": tempfile.mkdtemp()}
    stages = {}
    for name, options in (("teacher", {}), ("cached", cache)):
        torch.manual_seed(0)
        stage = DistillStage(
            model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=args.student, teacher=args.teacher,
            alpha=0.5, **options,
        )  # fmt: skip
        prepare_fit(stage, dm)
        stage.on_fit_start()  # the cached stage makes its teacher pass here
        stages[name] = stage.train()
    batches = list(dm.dataloader("train", shuffle=True))
    times: dict[str, list[float]] = {name: [] for name in stages}
    for step in range(args.steps):
        batch = batches[step % len(batches)]
        for name, stage in stages.items():
            start = time.perf_counter()
            student, teacher, targets, _ = stage.off_policy(batch, "train")
            per_token = stage.divergence(student[targets != IGNORE_INDEX], teacher, "fkl", 1.0)
            mixed_loss(per_token, student, targets, 1.0, 0.5).loss.backward()
            times[name].append(time.perf_counter() - start)
            stage.model.zero_grad(set_to_none=True)
    medians = {name: statistics.median(t[WARMUP:]) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name}: median {1000 * median:.1f} ms/step over {args.steps - WARMUP} steps")
    print(f"k = {args.top_k}: {1 - medians['cached'] / medians['teacher']:.1%} less time per step with the cache")


if __name__ == "__main__":
    main()
