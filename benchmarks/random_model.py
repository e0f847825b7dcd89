"""A model folder of a chosen shape with random weights, for timing benchmarks of a model size nobody trained.

    python benchmarks/random_model.py --like <model folder> --layers 12 --width 768 --out <folder>

A decoding step's time depends on the model's shape, not on its weights, so the serving benchmarks
(`serve.py`, `engine_steps.py`) can measure a GPT-2-small-shaped model (12 × 768, 85 M parameters)
on a machine that could never train one. `--like` gives the tokenizer and every other setting (context,
activation, norms); the heads are 64 wide, the MLP 4× the width, as in GPT-2.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from minigpt.model import Transformer
from minigpt.model.folder import load_model_and_tokenizer, save_model_folder


def main() -> None:
    """Write the random model folder and print its size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--like", required=True, help="a model folder: its tokenizer and its other settings")
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--width", type=int, required=True, help="a multiple of 64 (the head width)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.width % 64:
        parser.error(f"--width {args.width} is not a multiple of 64, the head width; use e.g. 768.")
    like, tokenizer = load_model_and_tokenizer(args.like)
    heads = args.width // 64
    config = dataclasses.replace(
        like.config,
        n_layer=args.layers,
        n_embd=args.width,
        n_head=heads,
        n_kv_head=heads,
        mlp_hidden=4 * args.width,
        attn_head_dim=None,
    )
    torch.manual_seed(args.seed)
    model = Transformer(config).eval()
    save_model_folder(args.out, model, tokenizer)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {args.layers} × {args.width}, {parameters / 1e6:.1f} M parameters, random weights")


if __name__ == "__main__":
    main()
