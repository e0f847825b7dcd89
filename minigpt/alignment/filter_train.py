"""Train the harmful-content filter on judge-labelled text, attack it, and train it on what the attack finds.

    python -m minigpt.alignment.filter_train init_from=<sft run>/model out=filter/
    python -m minigpt.alignment.filter_train out=filter/ model=gpt_nano     # a fresh trunk, char tokenizer

1. The shared trunk (`init_from`; without it a fresh `model` trunk with a character tokenizer of the
   texts) gets a multi-label head (`minigpt.alignment.filter_model`) and is fine-tuned with per-label
   binary cross-entropy on `filter_corpus` train texts.
2. The attack search (`minigpt.alignment.attacks`) runs on the held-out harmful texts: the attack success
   rate (ASR) *before* adversarial training.
3. Adversarial training (Goodfellow et al. 2015's recipe, at the text level as Jia & Liang 2017 / Wallace
   et al. 2019 use it): for `rounds` rounds, the search runs on the harmful *training* texts, every miss it
   finds is added to the training set with its original labels, and the filter trains on the union.
4. The ASR *after*, on the same held-out texts (whose words and injection templates it never saw).

Writes `<out>/model` (the filter folder `load_filter` and `chat safety=filter filter=<out>/model` read),
`<out>/report.json` (every number) and `<out>/misses.jsonl` (the misses found, before and after).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from minigpt.alignment.attacks import AttackResult, attack, attack_success_rate
from minigpt.alignment.constitution import load_constitution
from minigpt.alignment.filter_data import LabelledText, filter_corpus, filter_labels
from minigpt.alignment.filter_model import INJECTION, HarmClassifier, encode_texts, predict, save_filter
from minigpt.alignment.red_team import planted_secret
from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text


def train_filter(
    model: HarmClassifier,
    tokenizer: Tokenizer,
    texts: Sequence[LabelledText],
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> float:
    """`steps` AdamW steps of the per-label BCE on random batches of `texts`; the mean loss of the last 10."""
    if not texts:
        raise ConfigError("The filter's training set is empty; raise n (e.g. n=4000).")
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    device = model.head.weight.device
    model.train()
    losses = []
    for _ in range(steps):
        batch = rng.sample(list(texts), min(batch_size, len(texts)))
        ids, lengths = encode_texts(tokenizer, [t.text for t in batch], model.trunk.config.block_size)
        targets = torch.tensor([t.labels for t in batch], device=device)
        loss = F.binary_cross_entropy_with_logits(model(ids.to(device), lengths.to(device)).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return sum(losses[-10:]) / len(losses[-10:])


def adversarial_training(
    model: HarmClassifier,
    tokenizer: Tokenizer,
    texts: Sequence[LabelledText],
    rounds: int,
    steps: int,
    attacked: int = 400,
    attack_steps: int = 3,
    budget: int = 200,
    seed: int = 0,
    **train: Any,
) -> list[dict[str, Any]]:
    """`rounds` rounds of: attack `attacked` harmful training texts, add the misses (original labels), train.

    Returns one summary per round (texts attacked, misses found, training-set size)."""
    pool = list(texts)
    harmful = [t for t in texts if t.harmful]
    rng = random.Random(seed)
    history = []
    for r in range(rounds):
        chosen = rng.sample(harmful, min(attacked, len(harmful)))
        results = attack(model, tokenizer, [t.text for t in chosen], attack_steps, budget, seed=seed + r)
        misses = [LabelledText(res.adversarial, t.labels) for t, res in zip(chosen, results) if res.success]
        pool += misses
        train_filter(model, tokenizer, pool, steps, seed=seed + r, **train)
        history.append({"round": r + 1, "attacked": len(chosen), "misses": len(misses), "train_texts": len(pool)})
    return history


def detection(
    model: HarmClassifier, tokenizer: Tokenizer, texts: Sequence[LabelledText], threshold: float = 0.5
) -> dict[str, float]:
    """Recall on harmful texts, false-positive rate on clean ones, per-label recall, and the injection detector's."""
    probs = predict(model, tokenizer, [t.text for t in texts])
    flagged = probs.max(dim=1).values >= threshold
    labels = torch.tensor([t.labels for t in texts])
    harmful = labels.max(dim=1).values > 0
    out = {
        "recall": float(flagged[harmful].float().mean()) if harmful.any() else 0.0,
        "false_positive_rate": float(flagged[~harmful].float().mean()) if (~harmful).any() else 0.0,
    }
    for j, name in enumerate(model.labels):
        positive = labels[:, j] > 0
        if positive.any():
            out[f"recall/{name}"] = float((probs[positive, j] >= threshold).float().mean())
    k = model.labels.index(INJECTION) if INJECTION in model.labels else None
    if k is not None and (labels[:, k] == 0).any():
        out[f"false_positive_rate/{INJECTION}"] = float((probs[labels[:, k] == 0, k] >= threshold).float().mean())
    return out


def _asr(
    model: HarmClassifier, tokenizer: Tokenizer, harmful: list[str], cfg: DictConfig
) -> tuple[dict[str, Any], list[AttackResult]]:
    rate, results = attack_success_rate(
        model, tokenizer, harmful, cfg.threshold, steps=cfg.attack_steps, budget=cfg.budget
    )
    kinds: dict[str, int] = {}
    for result in results:
        if result.success:
            for kind in set(result.kinds):
                kinds[kind] = kinds.get(kind, 0) + 1
    return {"asr": rate, "attacked": len(results), "misses_by_kind": kinds}, results


def fresh_trunk(model: DictConfig, texts: Sequence[str]) -> tuple[Transformer, Tokenizer]:
    """A randomly initialised trunk of the `model` config and a character tokenizer of `texts`."""
    tokenizer = CharTokenizer.train("".join(texts))
    fields = {str(k): v for k, v in dict(OmegaConf.to_container(model, resolve=True)).items()}  # type: ignore[arg-type]
    return Transformer(ModelConfig.from_dict({**fields, "vocab_size": tokenizer.vocab_size})), tokenizer


def main(cfg: DictConfig) -> dict[str, Any]:
    """Steps 1–4 of the module docstring (`conf/filter_train.yaml`); print and write the report."""
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    constitution = load_constitution(cfg.constitution)
    secret = planted_secret(constitution)
    train = filter_corpus(constitution, cfg.n, "train", secret, cfg.injection_fraction, cfg.seed)
    test = filter_corpus(constitution, cfg.n_test, "test", secret, cfg.injection_fraction, cfg.seed)
    if cfg.init_from:
        trunk, tokenizer = load_model_and_tokenizer(cfg.init_from, field="init_from")
    else:
        trunk, tokenizer = fresh_trunk(cfg.model, [t.text for t in train + test])
    model = HarmClassifier(trunk, filter_labels(constitution))
    train_filter(model, tokenizer, train, cfg.steps, cfg.batch_size, cfg.lr, cfg.seed)
    held_out = [t.text for t in test if t.harmful][: cfg.attack_n]
    report: dict[str, Any] = {"train_texts": len(train), "test_texts": len(test)}
    report["before"] = detection(model, tokenizer, test, cfg.threshold)
    before, before_results = _asr(model, tokenizer, held_out, cfg)
    report["before"].update(before)
    report["rounds"] = adversarial_training(
        model, tokenizer, train, cfg.rounds, cfg.round_steps, cfg.attack_n, cfg.attack_steps, cfg.budget, cfg.seed,
        batch_size=cfg.batch_size, lr=cfg.lr,
    )  # fmt: skip
    report["after"] = detection(model, tokenizer, test, cfg.threshold)
    after, after_results = _asr(model, tokenizer, held_out, cfg)
    report["after"].update(after)
    out = Path(cfg.out).expanduser()
    save_filter(out / "model", model, tokenizer)
    misses = [
        {"when": when, **asdict(r)}
        for when, rs in (("before", before_results), ("after", after_results))
        for r in rs
        if r.success
    ]
    atomic_write_text(out / "misses.jsonl", "".join(json.dumps(m) + "\n" for m in misses))
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    for when in ("before", "after"):
        r = report[when]
        print(
            f"{when}: recall {r['recall']:.3f}, false positives {r['false_positive_rate']:.3f}, "
            f"injection recall {r.get('recall/' + INJECTION, 0.0):.3f}, attack success {r['asr']:.3f} "
            f"of {r['attacked']} ({r['misses_by_kind']})"
        )
    print(f"{time.perf_counter() - started:.0f} s → {out}")
    return report


if __name__ == "__main__":
    from minigpt.cli.command import command

    command("filter_train")(main)()
