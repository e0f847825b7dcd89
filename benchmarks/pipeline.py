"""Step time of pipeline parallelism on 2 CPU processes against one process, for gpt_small.

    python benchmarks/pipeline.py [--steps 6] [--batch 8] [--microbatches 2 4 8]

One process trains gpt_small (6 layers × 384, context 256, character vocabulary of 65) on random tokens
with the plain step (forward, loss, backward, AdamW). The pipeline runs the same batch through
`minigpt.scale.pipeline` (the pieces `strategy=pipeline` uses: `cut_model`, `PipelineRunner`): 2 gloo
processes, blocks 0–2 with the embedding on one, blocks 3–5 with the head on the other, for each
schedule and number of microbatches. Every process uses one thread. Step time: median over the steps
after the first, the slower rank, as wall-clock time and as the process' CPU time. With equal stages the
ideal pipelined step is (M+P−1)/(M·P) of the single one (the GPipe bubble); communication and the
smaller matrix products of a microbatch add to that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from minigpt.losses.lm import lm_loss
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.scale.pipeline import PipelineRunner, cut_model

GPT_SMALL: dict[str, Any] = dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65, dropout=0.0)


def step_times(step: object, steps: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `step()` over `steps` calls after a first, warm-up one."""
    walls, cpus = [], []
    for i in range(steps + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        step()  # type: ignore[operator]
        if i:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (inputs, targets) of `size` sequences of the full context, the same on every process."""
    tokens = torch.randint(0, 65, (size, 257), generator=torch.Generator().manual_seed(0))
    return tokens[:, :-1], tokens[:, 1:]


def single(steps: int, size: int) -> tuple[float, float]:
    """The plain step in this process."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**GPT_SMALL))
    optimizer = torch.optim.AdamW(model.parameters())
    inputs, targets = batch(size)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        lm_loss(model(inputs)[0], targets).backward()
        optimizer.step()

    return step_times(step, steps)


def rank_main(rank: int, port: int, schedule: str, microbatches: int, steps: int, size: int, out: str) -> None:
    """One of 2 pipeline stages; writes its (wall, CPU) step times to `<out>/<rank>.json`."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**GPT_SMALL))
    cut_model(model, rank, 2)
    runner = PipelineRunner(model, rank, 2, microbatches, schedule, torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters())
    inputs, targets = batch(size)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        runner.run(inputs, targets, {}, train=True)
        optimizer.step()

    times = step_times(step, steps)
    Path(out, f"{rank}.json").write_text(json.dumps(times))
    dist.destroy_process_group()


def pipelined(schedule: str, microbatches: int, steps: int, size: int, port: int) -> tuple[float, float]:
    """The slower rank's (wall, CPU) step time of a 2-stage pipeline."""
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(rank_main, args=(port, schedule, microbatches, steps, size, out), nprocs=2, join=True)
        times = [json.loads(Path(out, f"{rank}.json").read_text()) for rank in (0, 1)]
    return max(t[0] for t in times), max(t[1] for t in times)


def main() -> None:
    """Print one row per configuration: step time and its ratio to the single process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--microbatches", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--port", type=int, default=29533)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = single(args.steps, args.batch)
    print(f"gpt_small, batch {args.batch} × 256 tokens, {args.steps} timed steps, 1 thread per process")
    print(f"{'run':<22}{'wall s':>8}{'ratio':>7}{'CPU s':>8}{'ideal':>7}")
    print(f"{'1 process':<22}{base[0]:>8.3f}{1:>7.2f}{base[1]:>8.3f}{1:>7.2f}")
    for i, (schedule, m) in enumerate((s, m) for m in args.microbatches for s in ("gpipe", "1f1b") if m >= 2):
        wall, cpu = pipelined(schedule, m, args.steps, args.batch, args.port + i)
        ideal = (m + 1) / (2 * m)  # (M+P−1)/(M·P) with P = 2
        print(f"{f'2 stages {schedule} M={m}':<22}{wall:>8.3f}{wall / base[0]:>7.2f}{cpu:>8.3f}{ideal:>7.2f}")


if __name__ == "__main__":
    main()
