"""MoE step time against the dense model with the same FLOPs per token, side by side in one run.

    OMP_NUM_THREADS=1 python benchmarks/moe.py [--steps 20] [--rounds 5] [--models gpt_nano moe_8x ...]

Every model config here is gpt_nano's trunk with the same active feed-forward width per token (top-2 of
256, top-1 of 512, top-4 of 128 every other layer…), so the ratio to gpt_nano is the cost of routing and
dispatch. A step is forward + LM loss + aux loss + backward + AdamW, on one (12, 64) batch of a
96-token vocabulary (the char tokenizer's size). Models are timed in interleaved rounds and the median
step time is reported, so that load from other processes hits all of them alike. Goal: moe_8x ≤ 1.3×.
Experts run on a padded (E, capacity, C) buffer: dropless routing pads every expert to the busiest one's
load, so its extra expert compute is the imbalance (`max_load` in the logs); a capacity factor caps it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from minigpt.model.config import ModelConfig
from minigpt.model.moe import MoELayer
from minigpt.model.transformer import Transformer

CONF = str(Path(__file__).resolve().parents[1] / "conf")
VOCAB, BATCH, SEQ = 96, 12, 64


def model_config(name: str, overrides: list[str]) -> ModelConfig:
    """`conf/model/<name>.yaml` (its defaults resolved by Hydra) with the benchmark's vocabulary."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}", *overrides])
    fields = OmegaConf.to_container(cfg.model, resolve=True)
    fields["vocab_size"] = VOCAB
    return ModelConfig.from_dict(fields)


def active_params(model: Transformer) -> int:
    """Non-embedding parameters a token uses: experts count k/E of their weights (c/E for expert choice)."""
    n = model.num_params(non_embedding=True)
    for block in model.blocks:
        if isinstance(block.ffn, MoELayer):
            moe = block.ffn.moe
            used = moe.capacity_factor if moe.router == "expert_choice" else moe.top_k
            expert_params = sum(p.numel() for p in block.ffn.experts.parameters())
            n -= round(expert_params * (1 - used / moe.num_experts))
    return n


def time_steps(
    model: Transformer, optimizer: torch.optim.Optimizer, batch: torch.Tensor, steps: int
) -> tuple[float, float]:
    """Mean seconds per training step over `steps` steps, and the last step's mean `max_load` (1 if dense).

    `max_load` (E × the busiest expert's share) is how much a dropless layer pads its expert buffer.
    """
    start = time.perf_counter()
    for _ in range(steps):
        logits, aux = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten()) + sum(aux.get("aux_loss", []))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = (time.perf_counter() - start) / steps
    loads = [stats["load"].max().item() * stats["load"].numel() for stats in aux.get("moe", [])]
    return seconds, statistics.mean(loads) if loads else 1.0


def main() -> None:
    """Time each model, print a table with the ratio of each to the first (the dense baseline)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="steps per timing round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    args = parser.parse_args()
    torch.manual_seed(0)
    variants = {
        "gpt_nano (dense)": ("gpt_nano", []),
        "moe_8x (top-2, dropless)": ("moe_8x", []),
        "moe_8x (top-2, capacity 1.25)": ("moe_8x", ["model.moe.capacity_factor=1.25"]),
        "moe_8x expert_choice c=2": ("moe_8x", ["model.moe.router=expert_choice", "model.moe.capacity_factor=2.0"]),
        "switch_8x (top-1, c=1.25)": ("switch_8x", []),
        "moe_16x (top-2)": ("moe_16x", []),
        "moe_64x_top4 (every 2nd layer)": ("moe_64x_top4", []),
    }
    runs = {}
    for label, (name, overrides) in variants.items():
        model = Transformer(model_config(name, overrides))
        runs[label] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3), [])
    batch = torch.randint(0, VOCAB, (BATCH, SEQ + 1))
    for model, optimizer, _ in runs.values():  # warm-up
        time_steps(model, optimizer, batch, 3)
    for _ in range(args.rounds):
        for model, optimizer, times in runs.values():
            times.append(time_steps(model, optimizer, batch, args.steps))
    base = statistics.median(t for t, _ in next(iter(runs.values()))[2])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {BATCH}×{SEQ}")
    print(f"{'model':34s} {'params':>9s} {'active':>9s} {'max_load':>8s} {'ms/step':>8s} {'× dense':>8s}")
    for label, (model, _, times) in runs.items():
        ms = statistics.median(t for t, _ in times)
        row = f"{label:34s} {model.num_params(True):9,d} {active_params(model):9,d} {times[-1][1]:8.2f}"
        print(f"{row} {1e3 * ms:8.1f} {ms / base:8.2f}")


if __name__ == "__main__":
    main()
