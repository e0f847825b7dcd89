"""Infill exact-match: does the model write a held-out middle back from the code around it?

    python evaluate.py run=<run> eval=infill infill.n=200                            # whole lines
    python evaluate.py run=<run> eval=infill infill.middle=expression infill.max_chars=24   # expressions

The test is Bavarian et al.'s (2022) single-line infilling, scored by exact match instead of by tests:
held-out code (the run's validation split, which FIM training never rewrites) is cut at line ends into
pieces of about `piece_chars` characters (`minigpt.code.fim.chunk_lines`, the pieces context-level FIM
trains on); in each, one middle of `min_chars` to `max_chars` non-blank characters is drawn: a whole line
(`middle="line"`), or one whole expression within a line (`"expression"`: a name, an attribute, a call,
a constant, as `data.fim_middle_by=ast` masks them; the paper's random-span test made syntactic). The
model reads the rest in PSM order (`<|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>`) or SPM
order (`<|fim_prefix|><|fim_suffix|> suffix <|fim_middle|> prefix`), decodes greedily until its
end-of-text token or the line's end, and scores 1 when that equals the middle exactly (indentation and,
for a line, the newline included).

A model trained without FIM has never seen the sentinels; its score is the baseline FIM should beat.

Exact match of a whole line is a hard, coarse test for a tiny model, so the middle's loss is reported
too (the paper's "FIM loss"): the mean negative log-likelihood, in nats per token, of the true middle's
tokens after each prompt, teacher-forced. Order `l2r` is the same middle after the prefix alone, as plain
text: what a left-to-right model can do without the suffix. A FIM-trained model should beat its own
`l2r` loss (it uses the suffix) and the plain model's PSM and SPM losses (it knows the sentinels).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from minigpt.code.fim import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, FIMSplit, chunk_lines, chunk_with_spans
from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError

ORDERS = ("psm", "spm")
LOSS_ORDERS = ("psm", "spm", "l2r")
MIDDLES = ("line", "expression")


Cuts = list[tuple[int, int]]  # (start, end) character offsets of the middles a piece offers


def _in_range(text: str, min_chars: int, max_chars: int | None) -> bool:
    return min_chars <= len(text.strip()) <= (max_chars or len(text))


def line_cuts(piece: str) -> Cuts:
    """The whole lines of `piece` (newline included), or none when it has fewer than 3 lines."""
    lines = piece.splitlines(keepends=True)
    if len(lines) < 3:
        return []
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    return [(starts[i], starts[i + 1]) for i, line in enumerate(lines) if line.endswith("\n")]


def pieces_with_cuts(documents: Sequence[str], piece_chars: int, middle: str) -> list[tuple[str, Cuts]]:
    """Every piece of `documents` with the middles it offers: its lines, or the single-line expression
    nodes wholly inside it (`chunk_with_spans`: the nodes of the whole file; a file that does not parse
    offers no piece)."""
    if middle == "line":
        return [(piece, line_cuts(piece)) for doc in documents for piece in chunk_lines(doc, piece_chars)]
    found: list[tuple[str, Cuts]] = []
    for doc in documents:
        for piece, spans in chunk_with_spans(doc, piece_chars, ("expression",)):
            if spans is not None:
                found.append((piece, [(s.start, s.end) for s in spans if "\n" not in piece[s.start : s.end]]))
    return found


def infill_examples(
    documents: Sequence[str],
    n: int,
    seed: int = 0,
    piece_chars: int = 400,
    min_chars: int = 4,
    max_chars: int | None = None,
    middle: str = "line",
) -> list[FIMSplit]:
    """Up to `n` (prefix, middle, suffix) cuts, each from a different piece of `documents`.

    The middle is a whole line (`middle="line"`) or a whole expression within a line (`"expression"`: a
    name, a call, a constant …, the AST-node middles of `data.fim_middle_by=ast`) of `min_chars` to
    `max_chars` (None: any number of) non-blank characters.
    """
    if middle not in MIDDLES:
        raise ConfigError(f"infill.middle={middle!r} is not one of {list(MIDDLES)}.")
    rng = random.Random(seed)
    pieces = pieces_with_cuts(documents, piece_chars, middle)
    rng.shuffle(pieces)
    examples: list[FIMSplit] = []
    for piece, cuts in pieces:
        choices = [(a, b) for a, b in cuts if _in_range(piece[a:b], min_chars, max_chars)]
        if not choices:
            continue
        a, b = rng.choice(choices)
        examples.append(FIMSplit(piece[:a], piece[a:b], piece[b:]))
        if len(examples) == n:
            break
    return examples


def infill_prompt(split: FIMSplit, order: str) -> str:
    """The text the model continues with the middle: the sentinels around prefix and suffix (`l2r`: the
    prefix alone, no sentinels)."""
    if order == "l2r":
        return split.prefix
    if order == "psm":
        return f"{FIM_PREFIX}{split.prefix}{FIM_SUFFIX}{split.suffix}{FIM_MIDDLE}"
    return f"{FIM_PREFIX}{FIM_SUFFIX}{split.suffix}{FIM_MIDDLE}{split.prefix}"


def first_line(text: str, keep_newline: bool = True) -> str:
    """`text` up to its first newline (included when `keep_newline`: a whole line's middle ends with one)."""
    cut = text.find("\n")
    return text if cut < 0 else text[: cut + 1 if keep_newline else cut]


@torch.no_grad()
def infill_exact_match(
    model: Transformer,
    tokenizer: Tokenizer,
    examples: Sequence[FIMSplit],
    order: str = "psm",
    batch_size: int = 32,
) -> tuple[float, list[str]]:
    """The share of `examples` whose middle the model writes exactly (greedy), and what it wrote.

    What it wrote is its reply up to the end-of-text token (where a FIM-trained model stops a middle) and
    up to the first line end (a middle never crosses one).
    """
    if order not in ORDERS:
        raise ConfigError(f"infill order {order!r} is not one of {list(ORDERS)}.")
    missing = [t for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE) if t not in tokenizer.special_tokens]
    if missing:
        raise ConfigError(f"eval=infill needs a tokenizer with the FIM tokens {missing}: train with tokenizer=bpe_code")
    stops = [tokenizer.eos_id] if tokenizer.eos_id is not None else []
    lines: list[str] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        prompts = [tokenizer.encode(infill_prompt(ex, order), allow_special=True) for ex in chunk]
        # Room for the longest middle and a few tokens more: a wrong line may be longer.
        longest = max(len(tokenizer.encode(ex.middle)) for ex in chunk)
        config = GenerationConfig(max_new_tokens=longest + 4, strategy="greedy", stop_tokens=stops)
        pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        rows = generate(model, prompts, config, pad_id=pad_id).token_lists()
        for row, ex in zip(rows, chunk):
            lines.append(first_line(tokenizer.decode(row, skip_special=True), ex.middle.endswith("\n")))
    score = sum(line == ex.middle for line, ex in zip(lines, examples)) / max(len(examples), 1)
    return score, lines


@torch.no_grad()
def middle_loss(model: Transformer, tokenizer: Tokenizer, examples: Sequence[FIMSplit], order: str = "psm") -> float:
    """Mean NLL (nats/token) of the true middles' tokens after their prompts in `order`, teacher-forced.

    A prompt and middle longer than the model's context keep their last `block_size` tokens (the prompt's
    start is dropped, never the middle's tokens unless the middle alone is longer).
    """
    if order not in LOSS_ORDERS:
        raise ConfigError(f"infill order {order!r} is not one of {list(LOSS_ORDERS)}.")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for ex in examples:
        context = tokenizer.encode(infill_prompt(ex, order), allow_special=True) or [tokenizer.eos_id or 0]
        middle = tokenizer.encode(ex.middle)
        ids = (context + middle)[-(model.config.block_size + 1) :]
        n = min(len(middle), len(ids) - 1)
        logits, _ = model(torch.tensor([ids[:-1]]))
        targets = torch.tensor(ids[-n:])
        total += torch.nn.functional.cross_entropy(logits[0, -n:], targets, reduction="sum").item()
        count += n
    model.train(was_training)
    return total / max(count, 1)


def validation_documents(tokens: Sequence[int], tokenizer: Tokenizer) -> list[str]:
    """The documents of a validation token stream, without the first (the split may cut it)."""
    if tokenizer.eos_id is None:
        raise ConfigError("eval=infill needs a tokenizer with <|eos|> to find where held-out files end.")
    eos = tokenizer.decode([tokenizer.eos_id])
    return [doc for doc in tokenizer.decode(list(tokens)).split(eos)[1:] if doc.strip()]


def evaluate_infill(
    model: Transformer,
    tokenizer: Tokenizer,
    documents: Sequence[str],
    n: int = 200,
    piece_chars: int = 400,
    min_chars: int = 4,
    orders: Sequence[str] = ORDERS,
    seed: int = 0,
    max_chars: int | None = None,
    middle: str = "line",
) -> dict[str, Any]:
    """Infill exact-match in each order on `n` held-out middles of `documents`, with one example shown.

    `starts_with/<order>` is the share of replies that begin with the middle: credit for writing the right
    text without knowing where to stop (a model never trained with FIM has no reason to stop after it).
    """
    if max_chars is not None and max_chars < min_chars:
        raise ConfigError(f"infill.max_chars={max_chars} is below infill.min_chars={min_chars}; raise it or set null.")
    examples = infill_examples(documents, n, seed, piece_chars, min_chars, max_chars, middle)
    if not examples:
        raise ConfigError(f"eval=infill found no held-out {middle} to infill; the validation split is too small.")
    results: dict[str, Any] = {"n": len(examples), "unit": middle}
    for order in orders:
        score, lines = infill_exact_match(model, tokenizer, examples, order)
        results[f"exact_match/{order}"] = score
        results[f"starts_with/{order}"] = sum(w.startswith(ex.middle) for w, ex in zip(lines, examples)) / len(examples)
        results[f"example/{order}"] = {"middle": examples[0].middle, "written": lines[0]}
    for order in (*orders, "l2r"):
        results[f"middle_loss/{order}"] = middle_loss(model, tokenizer, examples, order)
    return results


def infill_report(data: Any, model: Transformer, tokenizer: Tokenizer, **options: Any) -> dict[str, Any]:
    """`evaluate_infill` on the validation split of `data` (a text corpus's data node, e.g. the run's own)."""
    from hydra.utils import instantiate

    datamodule = instantiate(data) if data is not None else None
    if datamodule is None or not hasattr(datamodule, "attach_tokenizer") or not hasattr(datamodule, "prepare"):
        raise ConfigError("eval=infill needs a code corpus: evaluate a pretraining run, or pass data=python_stdlib.")
    datamodule.attach_tokenizer(tokenizer)
    documents = validation_documents(datamodule.prepare().load("val"), tokenizer)
    return evaluate_infill(model, tokenizer, documents, **options)
