"""Generation speed: MiniGPT's KV-cache engine against Hugging Face `generate`, same weights, one run.

    OMP_NUM_THREADS=1 python benchmarks/generate.py [--new-tokens 200] [--batches 1 8] [--shapes small nano]
        [--families gpt2 llama] [--rounds 3] [--int8]

Random models are exported to `transformers` through `minigpt.export.hf`: `small` is gpt_small-sized
(6 layers, 6 heads, 384 wide, BPE-sized vocabulary 8192), `nano` is the default gpt_nano shape (4 layers,
4 heads, 128 wide, a character vocabulary of 96); both get a 512-token context. For each batch size and
decoding (greedy, beam 4), both engines continue the same prompts by exactly `--new-tokens` tokens (no
stop token); the table shows generated tokens per second, the ratio, and whether both made the same tokens.

Fairness on a shared machine: each engine is warmed up once per model, then the engines alternate for
`--rounds` rounds (ours, HF, HF, ours, …), so that a burst of load from other jobs hits both alike.
Each engine is scored by its best (shortest) round: load from other jobs only ever adds time, so the
best round is the closest to the engine's own speed, and the ratio is HF's best time over ours. The
load average before and after is printed with the table.

`--bound` adds two columns from one more run of HF under `torch.profiler`: the share of HF's time spent
inside the kernels that any engine decoding these weights must run (the matrix products, the attention
kernel, and for beams the `index_select` that reorders the KV cache), and the ratio an engine would reach
if it ran those kernels with no overhead at all: 1 / that share. Where this bound is under 2, a 2× speed-up
over HF needs faster kernels than PyTorch's for the same fp32 arithmetic, not a leaner decoding loop.

`--compile` adds a row per setting for MiniGPT with `GenerationConfig(compile=True)` (each decoding step
one compiled C++ function); the warm-up compiles it for every row count used, and the time that took
is printed under the table.

`--int8` adds a row per setting for MiniGPT with int8 dynamically quantised Linear weights
(`torch.ao.quantization.quantize_dynamic`: weights stored as int8 with one scale per tensor, activations
quantised on the fly). These are *not* the same weights, so instead of "yes/no" the last column gives
the share of generated tokens that agree with HF's fp32 output.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table
from torch.profiler import profile

from minigpt.export.hf import to_hf
from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer

SHAPES = {
    "small": dict(n_layer=6, n_head=6, n_embd=384, vocab_size=8192),
    "nano": dict(n_layer=4, n_head=4, n_embd=128, vocab_size=96),
}
FAMILIES = {
    "gpt2": {},
    "llama": dict(norm="rmsnorm", activation="swiglu", positions="rope", bias=False, n_kv_head=2),
}
PROMPT_LEN = 32
# The work itself: what any engine must run for these weights (profiler event names, self time).
SHARED_KERNELS = frozenset(
    {
        "aten::addmm",
        "aten::mm",
        "aten::bmm",
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::index_select",
    }
)
Engine = Callable[[torch.Tensor, int, int], list[list[int]]]  # (prompts, new tokens, beams) → new tokens


def ours(model: Transformer, compile: bool = False) -> Engine:
    """MiniGPT's `generate` on `model`, greedy (beams = 1) or beam search, eager or compiled steps."""

    def run(prompts: torch.Tensor, new_tokens: int, beams: int) -> list[list[int]]:
        strategy = "greedy" if beams == 1 else "beam"
        config = GenerationConfig(max_new_tokens=new_tokens, strategy=strategy, num_beams=beams, compile=compile)
        return generate(model, prompts, config).token_lists()

    return run


def huggingface(hf: torch.nn.Module) -> Engine:
    """`transformers`' `generate`, forced to make exactly `new_tokens` tokens."""

    def run(prompts: torch.Tensor, new_tokens: int, beams: int) -> list[list[int]]:
        with torch.no_grad():
            out = hf.generate(
                prompts,
                attention_mask=torch.ones_like(prompts),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                num_beams=beams,
                pad_token_id=0,
            )
        return out[:, prompts.shape[1] :].tolist()

    return run


def warm_ups(batches: list[int], config: ModelConfig) -> list[tuple[torch.Tensor, int]]:
    """(prompts, beams) for every way the race decodes: each batch size, greedy and with 4 beams."""
    return [(torch.randint(0, config.vocab_size, (batch, PROMPT_LEN)), beams) for batch in batches for beams in (1, 4)]


def timed(fn: Callable[[], list[list[int]]]) -> tuple[float, list[list[int]]]:
    """Seconds one call of `fn` takes, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def race(engines: dict[str, Engine], prompts: torch.Tensor, new_tokens: int, beams: int, rounds: int) -> dict:
    """Alternate the engines (one of them named "hf") for `rounds` rounds.

    Returns, per engine, its best (shortest) time in seconds and its output.
    """
    times: dict[str, list[float]] = {name: [] for name in engines}
    outputs: dict[str, list[list[int]]] = {}
    order = list(engines)
    for r in range(rounds):
        # Reverse the order every other round, so that no engine always runs right after another.
        for name in order if r % 2 == 0 else order[::-1]:
            seconds, outputs[name] = timed(lambda name=name: engines[name](prompts, new_tokens, beams))
            times[name].append(seconds)
    return {name: {"seconds": min(times[name]), "tokens": outputs[name]} for name in engines}


def kernel_share(engine: Engine, prompts: torch.Tensor, new_tokens: int, beams: int) -> float:
    """Share of one profiled run of `engine` spent inside `SHARED_KERNELS` (0–1)."""
    with profile() as prof:
        seconds, _ = timed(lambda: engine(prompts, new_tokens, beams))
    inside = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in SHARED_KERNELS) / 1e6
    return inside / seconds


def agreement(ours_tokens: list[list[int]], hf_tokens: list[list[int]]) -> str:
    """Return "yes" if identical, else the share of positions where the two outputs agree."""
    if ours_tokens == hf_tokens:
        return "yes"
    pairs = [(a, b) for mine, theirs in zip(ours_tokens, hf_tokens) for a, b in zip(mine, theirs)]
    return f"{sum(a == b for a, b in pairs) / len(pairs):.0%}"


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--shapes", nargs="+", default=["small", "nano"], choices=sorted(SHAPES))
    parser.add_argument("--families", nargs="+", default=["gpt2"], choices=sorted(FAMILIES))
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed runs per engine")
    parser.add_argument("--int8", action="store_true", help="add rows for int8 dynamically quantised weights")
    parser.add_argument("--bound", action="store_true", help="add HF's share of time in shared kernels")
    parser.add_argument("--compile", action="store_true", help="add rows for MiniGPT's compiled decoding step")
    args = parser.parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    rows, warm_up_notes = [], []
    for shape, name in itertools.product(args.shapes, args.families):
        config = ModelConfig(block_size=512, init_std=0.1, **SHAPES[shape], **FAMILIES[name])
        model = Transformer(config).eval()
        engines = {"": ours(model)}
        if args.int8:
            int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
            engines[" int8"] = ours(int8)
        if args.compile:
            engines[" compiled"] = ours(model, compile=True)
        engines["hf"] = huggingface(to_hf(model))
        warm = torch.randint(0, config.vocab_size, (1, PROMPT_LEN))
        for engine in engines.values():  # first calls pay one-off costs (allocations, lazy imports)
            engine(warm, 4, 2)
        if args.compile:
            # Compiling happens per kind of step (one row or several, beams sharing a prefix or not): decode
            # every setting the race will use, with its number of new tokens, so that no compiling lands in
            # the timed rounds.
            compiled, start = engines[" compiled"], time.perf_counter()
            for prompts, beams in warm_ups(args.batches, config):
                compiled(prompts, args.new_tokens, beams)
            seconds = time.perf_counter() - start
            warm_up_notes.append(f"{shape} {name}: compiling (and decoding the warm-up prompts) took {seconds:.0f} s")
        for batch, beams in itertools.product(args.batches, (1, 4)):
            prompts = torch.randint(0, config.vocab_size, (batch, PROMPT_LEN))
            result = race(engines, prompts, args.new_tokens, beams, args.rounds)
            n, hf = batch * args.new_tokens, result.pop("hf")
            bound = ()
            if args.bound:
                share = kernel_share(engines["hf"], prompts, args.new_tokens, beams)
                bound = (f"{share:.0%}", f"{1 / share:.1f}×")
            for suffix, mine in result.items():
                rows.append(
                    (
                        f"{shape} {name}{suffix}",
                        "greedy" if beams == 1 else f"beam {beams}",
                        str(batch),
                        f"{n / mine['seconds']:.0f}",
                        f"{n / hf['seconds']:.0f}",
                        f"{hf['seconds'] / mine['seconds']:.2f}×",
                        agreement(mine["tokens"], hf["tokens"]),
                        *bound,
                    )
                )
    title = (
        f"generation, {args.new_tokens} new tokens, {torch.get_num_threads()} thread(s), best of "
        f"{args.rounds} alternating rounds, load average {load_before:.1f} → {os.getloadavg()[0]:.1f}"
    )
    table = Table(title=title)
    columns = ["model", "decoding", "batch", "MiniGPT tok/s", "HF tok/s", "ratio", "same tokens"]
    if args.bound:
        columns += ["HF in shared kernels", "ratio bound"]
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    console = Console(width=150)
    console.print(table)
    for note in warm_up_notes:
        console.print(note)


if __name__ == "__main__":
    main()
