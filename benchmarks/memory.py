"""Peak memory and step time of gpt_small on 2 processes: activation checkpointing and the ZeRO stages.

    python benchmarks/memory.py [--steps 4] [--batch 4] [--variants plain ckpt_block zero1 ...]

Each variant trains gpt_small (6 layers × 384, context 256, character vocabulary of 65) for a few steps on
2 CPU processes (gloo) with random tokens, through the same pieces `train.py` uses: the model's
`activation_checkpointing`, `minigpt.scale.sharding.shard_stage` (FSDP2, ZeRO-2/3) and `build_optimizer`
(ZeroRedundancyOptimizer, ZeRO-1); `plain` is DDP. Every variant starts in fresh processes, so the
operating system's peak resident set size (`ru_maxrss`) is that variant's own; the reported memory is
that peak minus the resident size before the model was built, i.e. weights, gradients, optimizer state,
activations and communication buffers together (the larger of the two ranks). glibc is told to serve
every allocation above 64 KiB with mmap, so freed tensors leave the resident set at once and the peak is
the peak of live memory. Step time: median over the steps after the first, the slower rank, as wall-clock
time and as the process' CPU time (which other jobs on a shared machine disturb less; gloo's waits for
the other rank count in the wall time only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.scale.sharding import build_optimizer, shard_stage

GPT_SMALL = dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65, dropout=0.1)


@dataclass(frozen=True)
class Variant:
    """One measured configuration: what is recomputed and which ZeRO stage (0 = plain DDP)."""

    recompute: bool | str = False
    zero: int = 0


VARIANTS = {
    "plain": Variant(),
    "ckpt_block": Variant(recompute=True),
    "ckpt_attention": Variant(recompute="attention"),
    "ckpt_mlp": Variant(recompute="mlp"),
    "zero1": Variant(zero=1),
    "zero2": Variant(zero=2),
    "zero3": Variant(zero=3),
}


def resident_bytes() -> int:
    """The current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rank_main(rank: int, world: int, port: int, variant: Variant, steps: int, batch: int, out: str) -> None:
    """Train `steps` steps as rank `rank`; write {peak_bytes, step_seconds, loss} to `<out>/<rank>.json`."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    data = torch.randint(0, GPT_SMALL["vocab_size"], (steps, batch, GPT_SMALL["block_size"] + 1))
    before = resident_bytes()
    model = Transformer(ModelConfig(**GPT_SMALL, activation_checkpointing=variant.recompute)).train()
    groups = model.param_groups(0.1)
    if variant.zero >= 2:
        from torch.distributed.device_mesh import init_device_mesh

        holder = nn.ModuleDict({"model": model})  # shard_stage shards the stage's children, as in training
        shard_stage(holder, model, init_device_mesh("cpu", (world,)), reshard_after_forward=variant.zero == 3)
        groups = model.param_groups(0.1)  # the sharded parameters
        net: nn.Module = model
    else:
        net = nn.parallel.DistributedDataParallel(model)
    optimizer = build_optimizer(partial(torch.optim.AdamW, lr=1e-3), groups, shard_state=variant.zero == 1)
    times, cpu_times, loss = [], [], torch.tensor(0.0)
    for step in range(steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        idx, targets = data[step, :, :-1], data[step, :, 1:]
        logits, _ = net(idx)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes
    result = {
        "peak_bytes": peak - before,
        "step_seconds": statistics.median(times[1:]),
        "cpu_seconds": statistics.median(cpu_times[1:]),
        "loss": float(loss.detach()),
    }
    Path(out, f"{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def measure(variant: Variant, steps: int, batch: int) -> dict[str, float]:
    """Run one variant on 2 fresh processes; the larger peak and the slower step of the two ranks."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(rank_main, args=(2, port, variant, steps, batch, out), nprocs=2, join=True)
        ranks = [json.loads(Path(out, f"{r}.json").read_text()) for r in range(2)]
    return {
        "peak_bytes": max(r["peak_bytes"] for r in ranks),
        "step_seconds": max(r["step_seconds"] for r in ranks),
        "cpu_seconds": max(r["cpu_seconds"] for r in ranks),
        "loss": ranks[0]["loss"],
    }


def main() -> None:
    """Measure the chosen variants and print a markdown table with ratios against `plain`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="sequences per process per step")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)  # read by glibc when the ranks start
    names = ["plain", *[n for n in args.variants if n != "plain"]]
    results = {name: measure(VARIANTS[name], args.steps, args.batch) for name in names}
    plain = results["plain"]
    print(f"gpt_small, 2 processes × {args.batch} × {GPT_SMALL['block_size']} tokens, {args.steps} steps")
    print("| variant | peak MB (rank max) | × plain | step s (wall) | × plain | step CPU s | × plain | last loss |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ratios = {key: r[key] / plain[key] for key in ("peak_bytes", "step_seconds", "cpu_seconds")}
        print(
            f"| {name} | {r['peak_bytes'] / 1e6:,.0f} | {ratios['peak_bytes']:.2f} | {r['step_seconds']:.2f} "
            f"| {ratios['step_seconds']:.2f} | {r['cpu_seconds']:.2f} | {ratios['cpu_seconds']:.2f} | {r['loss']:.4f} |"
        )


if __name__ == "__main__":
    main()
