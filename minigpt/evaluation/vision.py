"""Evaluating a vision-language model: exact-match per question type on held-out images, the text-only
answer prior, and a grid of images with the model's answers (`python evaluate.py run=<run> eval=vision`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from minigpt.data.vision.datamodule import collate_vision, encode_vision_example
from minigpt.data.vision.digits import Digits
from minigpt.data.vision.example import VisionExample, VisionSource
from minigpt.data.vision.shapes import Shapes
from minigpt.losses.lm import IGNORE_INDEX
from minigpt.model.vision import VisionLanguageModel, load_vision_language_model
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import END_OF_TURN
from minigpt.utils.modes import eval_mode


def reply_exact_match(logits: Tensor, targets: Tensor) -> Tensor:
    """Bool (B,): every trained target of the row is the argmax of its logits.

    Under teacher forcing this is exactly whether greedy decoding would write the gold reply (and its
    `<|end|>`): greedy follows the gold path as long as each argmax is the gold token. Rows without any
    target count as False.
    """
    trained = targets != IGNORE_INDEX  # (B, T)
    right = (logits.argmax(-1) == targets) | ~trained
    return right.all(dim=1) & trained.any(dim=1)


def token_f1(prediction: str, gold: str) -> float:
    """Bag-of-words F1 between two replies (SQuAD's, Rajpurkar et al. 2016): with c the words they share
    (counted with multiplicity), P = c/|pred|, R = c/|gold|, F1 = 2PR/(P+R); 0 when nothing is shared.
    Words are split on spaces and commas, so "red circle, blue square" has four."""
    pred, ref = prediction.replace(",", " ").split(), gold.replace(",", " ").split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def answer_prior(train: list[VisionExample]) -> dict[str, str]:
    """The text-only answer prior: for each question, its most frequent training answer (the best any model
    can do without looking at the image; ties go to the answer seen first)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for ex in train:
        counts[ex.question][ex.answer] += 1
    return {question: answers.most_common(1)[0][0] for question, answers in counts.items()}


@torch.no_grad()
def exact_matches(
    model: VisionLanguageModel, tokenizer: Tokenizer, examples: list[VisionExample], batch_size: int = 64
) -> list[bool]:
    """Whether greedy decoding answers each example exactly (`reply_exact_match` under teacher forcing)."""
    num_tokens = model.tower.config.placeholders
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    hits: list[bool] = []
    with eval_mode(model):
        for start in range(0, len(examples), batch_size):
            rows = []
            for ex in examples[start : start + batch_size]:
                ids, mask = encode_vision_example(tokenizer, ex, num_tokens)
                targets = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
                rows.append((ids[:-1], targets, ex.images, ex.kind))
            batch = collate_vision(rows, pad_id)
            logits, _ = model(batch["input_ids"], batch["images"])
            hits += reply_exact_match(logits, batch["targets"]).tolist()
    return hits


def greedy_answer(
    model: VisionLanguageModel, tokenizer: Tokenizer, example: VisionExample, max_new_tokens: int = 24
) -> str:
    """The model's greedy reply to `example.prompt` with its images."""
    return tokenizer.decode(greedy_reply_ids(model, tokenizer, example, max_new_tokens)[1], skip_special=True)


def greedy_reply_ids(
    model: VisionLanguageModel, tokenizer: Tokenizer, example: VisionExample, max_new_tokens: int = 24
) -> tuple[list[int], list[int]]:
    """(prompt ids, greedy reply ids) of `example.prompt` with its images; the reply stops before `<|end|>`,
    after `max_new_tokens`, or where the context is full (the server reads its finish reason from these)."""
    ids, _ = encode_vision_example(tokenizer, example, model.tower.config.placeholders, add_generation_prompt=True)
    images = torch.from_numpy(np.stack(example.images)) if example.images else None
    with eval_mode(model):
        reply = model.greedy(ids, images, tokenizer.special_id(END_OF_TURN), max_new_tokens)
    return ids, reply


def vision_scores(
    model: VisionLanguageModel,
    tokenizer: Tokenizer,
    sources: Mapping[str, VisionSource],
    n: int | None,
    split: str = "test",
) -> tuple[dict[str, dict[str, float]], list[VisionExample]]:
    """{`source/kind`: {accuracy, prior, n}} on `split`, and the examples scored.

    `prior` is the text-only answer prior's accuracy on the same examples (`answer_prior`, from 2,000
    training examples of the source, or all of a fixed data set). Caption kinds also get `token_f1`, the
    mean `token_f1` of the greedy captions (partial credit for a caption with one object wrong).
    """
    size = model.tower.config.image_size
    scores: dict[str, dict[str, float]] = {}
    scored: list[VisionExample] = []
    for name, source in sources.items():
        examples = source.examples(split, n, size)
        prior = answer_prior(source.examples("train", 2000, size))
        hits = exact_matches(model, tokenizer, examples)
        for kind in sorted({ex.kind for ex in examples}):
            rows = [(ex, hit) for ex, hit in zip(examples, hits) if ex.kind == kind]
            scores[f"{name}/{kind}"] = {
                "accuracy": sum(hit for _, hit in rows) / len(rows),
                "prior": sum(prior.get(ex.question) == ex.answer for ex, _ in rows) / len(rows),
                "n": len(rows),
            }
            if "caption" in kind:
                f1 = [token_f1(greedy_answer(model, tokenizer, ex), ex.answer) for ex, _ in rows]
                scores[f"{name}/{kind}"]["token_f1"] = sum(f1) / len(f1)
        scored += examples
    return scores, scored


def plot_answer_grid(
    model: VisionLanguageModel, tokenizer: Tokenizer, examples: list[VisionExample], out: Path, cols: int = 4
) -> Path:
    """A PNG grid of images, each titled with its question, the model's greedy answer and the gold one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(examples) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, ex in zip(axes.flat, examples):
        answer = greedy_answer(model, tokenizer, ex)
        ax.imshow(ex.images[0].transpose(1, 2, 0), interpolation="nearest")
        colour = "green" if answer == ex.answer else "red"
        ax.set_title(f"{ex.question}\nmodel: {answer}\ngold: {ex.answer}", fontsize=7, color=colour)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def evaluate_vision_run(folder: Path, data: DictConfig | None, n: int, out_dir: Path) -> dict[str, Any]:
    """`evaluate.py eval=vision`: scores per question type on the held-out test split of the run's data
    (`data`, else digits and scenes), and `vision_answers.png` (16 test images with the model's answers)."""
    from hydra.utils import instantiate

    model, tokenizer = load_vision_language_model(folder, field="run")
    sources: dict[str, VisionSource] = {"digits": Digits(), "shapes": Shapes()}
    if data is not None and "sources" in data:
        sources = {name: source for name, source in instantiate(data.sources).items() if source is not None}
    scores, examples = vision_scores(model, tokenizer, sources, n)
    # Show a spread of sources and kinds: every len/16-th example.
    step = max(1, len(examples) // 16)
    grid = plot_answer_grid(model, tokenizer, examples[::step][:16], out_dir / "vision_answers.png")
    return {"scores": scores, "grid": str(grid)}
