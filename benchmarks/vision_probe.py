"""How well can an image encoder see the scenes and digits on its own? `vision.pretrain`'s classifier as a probe.

    python benchmarks/vision_probe.py --steps 400 cnn:24:16 vit:24:16 cnn:48:16 vit:48:16 cnn:48:9

Each spec `kind:image_size:num_tokens[:width]` builds a fresh encoder (ViT patches are image_size/√num_tokens
wide) and trains it with `minigpt.stages.vision_pretrain.pretrain_encoder` on the digits and the scenes
(one linear head per label on the token grid: the digit; each scene slot's colour and shape). Prints the
validation accuracy (every head right: for a scene, all three slots) and the wall time. Every scene
question (count, colour, shape, position, relation, caption) is a function of the three slot labels, so
this bounds what the language model can be told about a scene through that encoder.
"""

from __future__ import annotations

import argparse
import time

import torch

from minigpt.data.vision.digits import Digits
from minigpt.data.vision.shapes import Shapes
from minigpt.model.vision import VisionConfig, VisionTower
from minigpt.stages.vision_pretrain import PretrainConfig, pretrain_encoder


def encoder_for(spec: str) -> tuple[torch.nn.Module, int]:
    """(a fresh encoder, its image size) from `kind:image_size:num_tokens[:width]`."""
    kind, size, tokens, *width = spec.split(":")
    image_size, num_tokens = int(size), int(tokens)
    config = VisionConfig(
        kind=kind,  # type: ignore[arg-type]
        image_size=image_size,
        num_tokens=num_tokens,
        patch_size=image_size // max(1, int(num_tokens**0.5)),
        n_embd=int(width[0]) if width else 64,
    )
    return VisionTower(config, lm_width=config.n_embd).encoder, image_size


def main() -> None:
    """Probe each encoder spec; print one line per spec."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="+", help="kind:image_size:num_tokens[:width], e.g. cnn:48:16")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32, help="images per source per step")
    parser.add_argument("--num-train", type=int, default=3000, help="training scenes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = PretrainConfig(steps=args.steps, batch_size=args.batch, num_train=args.num_train)
    print("encoder | digits val acc | scenes val acc (all 3 slots) | seconds")
    for spec in args.specs:
        torch.manual_seed(args.seed)
        encoder, image_size = encoder_for(spec)
        start = time.perf_counter()
        scores = pretrain_encoder(encoder, {"digits": Digits(), "shapes": Shapes()}, config, image_size, args.seed)
        seconds = time.perf_counter() - start
        print(f"{spec} | {scores['digits']:.3f} | {scores['shapes']:.3f} | {seconds:.0f}", flush=True)


if __name__ == "__main__":
    main()
