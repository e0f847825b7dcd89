"""Step time of `stage=multimodal` stage 2 against text-only SFT of the same LM on the same number of tokens.

    python benchmarks/vision.py --init-from <sft model> --steps 30 [--image-size 48]

Both loops train every weight with AdamW on batches of `--batch` digit conversations (`data=vision/digits`,
16 image tokens each). The text-only loop feeds the same token ids with the `<|image|>` placeholders
replaced by ordinary text tokens, so both see exactly the same sequence lengths; the multimodal loop also
runs the encoder and projector and splices. The two loops take turns step by step (text, image, text, …),
so that a slower or faster stretch of a shared machine falls on both alike. Prints the median step times
and their ratio per encoder, dense and Mixture-of-Transformers (`vision.mot=true`).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch

from minigpt.data.vision.datamodule import VisionChatDataModule
from minigpt.data.vision.digits import Digits
from minigpt.model.folder import load_model_folder
from minigpt.model.vision import VisionConfig, VisionLanguageModel, VisionTower
from minigpt.stages.chat_model import ChatModel
from minigpt.tokenizer.chat import add_image_token


def paired_medians(
    a: Callable[[], torch.Tensor], b: Callable[[], torch.Tensor], steps: int, skip: int = 3
) -> tuple[float, float]:
    """Median wall times (seconds) of `a` and `b` run in turns, after `skip` warm-up turns."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(steps + skip):
        for step, record in ((a, times[0]), (b, times[1])):
            start = time.perf_counter()
            step()
            if i >= skip:
                record.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def training_step(
    model: torch.nn.Module, inputs: tuple[torch.Tensor | None, ...], targets: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """One AdamW step on all of `model`'s weights of the masked LM loss of `model(*inputs)`."""
    from minigpt.losses.lm import lm_loss

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = lm_loss(model(*inputs)[0], targets)
        loss.backward()
        optimizer.step()
        return loss

    return step


def main() -> None:
    """Measure and print the table rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init-from", required=True, help="a chat model folder (the LM)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=24, help="24 or 48 (vision.image_size)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    for kind, mot in (("vit", False), ("cnn", False), ("cnn", True)):
        torch.manual_seed(0)
        lm, tokenizer = load_model_folder(args.init_from)
        assert tokenizer is not None
        image_id = add_image_token(tokenizer)
        ChatModel.prepare(lm, tokenizer, None, "benchmark")
        size = args.image_size
        dm = VisionChatDataModule({"digits": Digits()}, image_size=size, image_tokens=16, seq_len=lm.config.block_size)
        dm.attach_tokenizer(tokenizer)
        dm.batch_size = args.batch
        batch = next(iter(dm.train_dataloader()))
        ids, targets, images = batch["input_ids"], batch["targets"], batch["images"]
        text_ids = torch.where(ids == image_id, torch.randint(0, tokenizer.n_base, ids.shape), ids)
        config = VisionConfig(kind=kind, mot=mot, image_size=size, patch_size=size // 4)
        # The vision model's LM is untied in place with MoT: the text loop keeps a dense copy.
        text_lm = copy.deepcopy(lm)
        vlm = VisionLanguageModel(lm, VisionTower(config, lm.config.n_embd), image_id)
        text, vision = paired_medians(
            training_step(text_lm, (text_ids,), targets), training_step(vlm, (ids, images), targets), args.steps
        )
        tokens = ids.numel()
        print(
            f"| {kind}{' + MoT' if mot else ''} | {size} px | {tuple(ids.shape)} "
            f"| {1e3 * text:.1f} ms ({tokens / text:,.0f} tok/s) "
            f"| {1e3 * vision:.1f} ms ({tokens / vision:,.0f} tok/s) | **{vision / text:.2f}×** |"
        )


if __name__ == "__main__":
    main()
