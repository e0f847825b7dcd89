"""The continuous-batching engine alone (no HTTP): what a decoding step costs with 1 row and with 8.

    python benchmarks/engine_steps.py --run <sft run>/model [--rows 1 8] [--waves 8] [--rounds 3]
        [--max-tokens 64] [--dtype float32] [--profile]

Why: with closed-loop clients (each sends its next request when its answer comes, as in
`benchmarks/serve.py`), the mean latency at 8 clients over the one at 1 client is, by Little's law,
the time of a wave of 8 requests over the time of one request (docs/serving.md, "Where the 8-client
latency goes"). This measures that ratio on the engine alone: `rows` greedy requests of `--max-tokens`
new tokens (the serving benchmark's prompts, `/v1/completions`-style, so each goes through one context
shift) are submitted together and stepped until all end, `--waves` times; each step's wall time and
thread CPU time are recorded and split by kind: steps that only decode (one token per row) and steps
that also prefill (requests joining, rows shifting their context). The settings alternate within each
round, and each is scored by its best round (load from other jobs only adds time).

`--profile` then splits a decoding-only step (torch.profiler, 30 steps per row count, its overhead
included) into the linear layers, attention and the rest, to show where the cost of more rows goes, and
times each linear layer of one block (and the head) alone at each row count (the median of 2,000 calls).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from serve import PROMPTS  # benchmarks/serve.py, beside this script: the shared SFT model's task prompts
from torch.profiler import ProfilerActivity, profile, record_function

from minigpt.inference.config import GenerationConfig
from minigpt.inference.continuous import ContinuousBatcher, Request
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.serve.settings import SERVING_DTYPES


def measure(engine: ContinuousBatcher, prompts: list[list[int]], waves: int, max_tokens: int) -> dict[str, float]:
    """Run `waves` waves of one request per prompt; per-wave wall and CPU ms, and the steps' split (ms)."""
    passes: list[int] = []  # tokens of the step's forward pass: more than its rows when it prefills
    hook = engine.model.tok_emb.register_forward_hook(lambda module, args, out: passes.append(args[0].numel()))
    decode, prefill, wall, cpu = [], [], 0.0, 0.0
    try:
        for _ in range(waves):
            config = GenerationConfig(max_new_tokens=max_tokens, strategy="greedy", stop_tokens=[])
            requests = [engine.submit(Request(list(prompt), config)) for prompt in prompts]
            while not all(r.finish_reason for r in requests):
                rows = len(engine.running) + len(engine.waiting)
                start, start_cpu = time.perf_counter(), time.thread_time()
                engine.step()
                cpu += time.thread_time() - start_cpu
                elapsed = (time.perf_counter() - start) * 1000
                wall += elapsed
                (decode if passes[-1] == rows else prefill).append(elapsed)
    finally:
        hook.remove()
    return {
        "wave": wall / waves,
        "wave_cpu": cpu * 1000 / waves,
        "decode_median": statistics.median(decode),
        "prefill_mean": statistics.mean(prefill),
        "prefill_steps": len(prefill) / waves,
        "steps": (len(decode) + len(prefill)) / waves,
    }


def profile_decoding(engine: ContinuousBatcher, prompts: list[list[int]], steps: int = 30) -> dict[str, float]:
    """Per decoding-only step (µs, profiled): the whole step, its linear layers and its attention calls."""
    config = GenerationConfig(max_new_tokens=steps + 8, strategy="greedy", stop_tokens=[])
    for prompt in prompts:
        engine.submit(Request(list(prompt), config))
    for _ in range(4):  # the joining step, then a few steps to warm up
        engine.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("step"):
                engine.step()
    totals = {event.key: event.cpu_time_total for event in prof.key_averages()}
    parts = {"step": "step", "linear": "aten::linear", "attention": "aten::scaled_dot_product_attention"}
    return {name: totals.get(key, 0.0) / steps for name, key in parts.items()}


def linear_costs(model: torch.nn.Module, rows: list[int], calls: int = 2000) -> dict[str, list[float]]:
    """µs per call of block 0's linear layers and the head, for an input of each row count (median)."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    costs: dict[str, list[float]] = {}
    for name, layer in layers.items():
        if not name.startswith(("blocks.0.", "lm_head")):
            continue
        costs[f"{name} {layer.in_features}→{layer.out_features}"] = row_costs = []
        for n in rows:
            x = torch.randn(n, layer.in_features, dtype=layer.weight.dtype)
            times = []
            with torch.inference_mode():
                for _ in range(calls):
                    start = time.perf_counter()
                    layer(x)
                    times.append(time.perf_counter() - start)
            row_costs.append(statistics.median(times) * 1e6)
    return costs


def main() -> None:
    """Measure every row count in every round; print the best round of each and the ratios to 1 row."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a model folder, e.g. the README SFT run's <run>/model")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--waves", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="also split a decoding step by operation")
    parser.add_argument("--dtype", choices=list(SERVING_DTYPES), default="float32", help="weights and KV cache")
    args = parser.parse_args()
    model, tokenizer = load_model_and_tokenizer(args.run, map_location="cpu")
    model = model.to(SERVING_DTYPES[args.dtype])  # as the server holds it (conf/serve.yaml dtype)
    prompts = [tokenizer.encode(p, allow_special=True) for p in PROMPTS]
    best: dict[int, dict[str, float]] = {}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for rows in args.rows if round_ % 2 else list(reversed(args.rows)):
            engine = ContinuousBatcher(model, tokenizer, max_batch=max(args.rows))
            wave = [prompts[i % len(prompts)] for i in range(rows)]
            result = measure(engine, wave, args.waves, args.max_tokens)
            if round_ and (rows not in best or result["wave"] < best[rows]["wave"]):
                best[rows] = result
    print(
        f"{torch.get_num_threads()} thread(s), {args.dtype}, "
        f"best of {args.rounds} rounds of {args.waves} waves, {args.run}\n"
    )
    columns = ["rows", "steps per wave (with prefill)", "wave (ms)", "wave CPU (ms)"]
    columns += ["decode-only step, median (ms)", "prefill step, mean (ms)"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|")
    for rows, r in best.items():
        print(
            f"| {rows} | {r['steps']:.0f} ({r['prefill_steps']:.0f}) | {r['wave']:.1f} | {r['wave_cpu']:.1f} | "
            f"{r['decode_median']:.3f} | {r['prefill_mean']:.2f} |"
        )
    one = best[args.rows[0]]
    for rows in args.rows[1:]:
        r = best[rows]
        wave, cpu, step = (r[k] / one[k] for k in ("wave", "wave_cpu", "decode_median"))
        print(f"\n{rows} rows / {args.rows[0]}: wave {wave:.2f}×, CPU {cpu:.2f}×, decode-only step {step:.2f}×")

    if args.profile:
        print("\n| rows | decoding step, profiled (µs) | linear layers | attention | the rest |")
        print("|---|---|---|---|---|")
        for rows in args.rows:
            engine = ContinuousBatcher(model, tokenizer, max_batch=max(args.rows))
            r = profile_decoding(engine, [prompts[i % len(prompts)] for i in range(rows)])
            rest = r["step"] - r["linear"] - r["attention"]
            print(f"| {rows} | {r['step']:.0f} | {r['linear']:.0f} | {r['attention']:.0f} | {rest:.0f} |")
        print("\n| linear layer (µs per call) | " + " | ".join(f"{n} row(s)" for n in args.rows) + " |")
        print("|---|" + "---|" * len(args.rows))
        for name, costs in linear_costs(model, args.rows).items():
            print(f"| {name} | " + " | ".join(f"{c:.1f}" for c in costs) + " |")


if __name__ == "__main__":
    main()
