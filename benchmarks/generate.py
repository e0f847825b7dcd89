"""Generation speed: MiniGPT's KV-cache engine against Hugging Face `generate`, same weights, one run.

    OMP_NUM_THREADS=1 python benchmarks/generate.py [--new-tokens 200] [--batches 1 8] [--shapes small nano]
        [--families gpt2 llama]

Random models are exported to `transformers` through `minigpt.export.hf`: `small` is gpt_small-sized
(6 layers, 6 heads, 384 wide, BPE-sized vocabulary 8192), `nano` is the default gpt_nano shape (4 layers,
4 heads, 128 wide, a character vocabulary of 96); both get a 512-token context. For each batch size and
decoding (greedy, beam 4), both engines continue the same prompts by exactly `--new-tokens` tokens (no
stop token); the table shows generated tokens per second, the ratio, and whether both made the same tokens.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

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


def timed(fn: Callable[[], list[list[int]]]) -> tuple[float, list[list[int]]]:
    """Seconds one call of `fn` takes, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--shapes", nargs="+", default=["small", "nano"], choices=sorted(SHAPES))
    parser.add_argument("--families", nargs="+", default=["gpt2"], choices=sorted(FAMILIES))
    args = parser.parse_args()
    torch.manual_seed(0)
    table = Table(title=f"generation, {args.new_tokens} new tokens, {torch.get_num_threads()} thread(s)")
    for column in ("model", "decoding", "batch", "MiniGPT tok/s", "HF tok/s", "ratio", "same tokens"):
        table.add_column(column, justify="right")
    for shape, name in itertools.product(args.shapes, args.families):
        config = ModelConfig(block_size=512, init_std=0.1, **SHAPES[shape], **FAMILIES[name])
        model = Transformer(config).eval()
        hf = to_hf(model)
        for batch in args.batches:
            prompts = torch.randint(0, config.vocab_size, (batch, PROMPT_LEN))
            for beams in (1, 4):
                gen = GenerationConfig(
                    max_new_tokens=args.new_tokens, strategy="greedy" if beams == 1 else "beam", num_beams=beams
                )
                ours_s, ours = timed(
                    lambda model=model, gen=gen, prompts=prompts: generate(model, prompts, gen).token_lists()
                )

                def run_hf(prompts: torch.Tensor = prompts, beams: int = beams, hf=hf) -> list[list[int]]:
                    with torch.no_grad():
                        out = hf.generate(
                            prompts,
                            attention_mask=torch.ones_like(prompts),
                            max_new_tokens=args.new_tokens,
                            min_new_tokens=args.new_tokens,
                            do_sample=False,
                            num_beams=beams,
                            pad_token_id=0,
                        )
                    return out[:, PROMPT_LEN:].tolist()

                hf_s, theirs = timed(run_hf)
                n = batch * args.new_tokens
                table.add_row(
                    f"{shape} {name}",
                    "greedy" if beams == 1 else f"beam {beams}",
                    str(batch),
                    f"{n / ours_s:.0f}",
                    f"{n / hf_s:.0f}",
                    f"{hf_s / ours_s:.2f}×",
                    "yes" if ours == theirs else "no",
                )
    Console().print(table)


if __name__ == "__main__":
    main()
