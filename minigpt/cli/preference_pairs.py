"""Make preference pairs from a model's own samples, labelled by a task's gold scorer.

    python -m minigpt.cli.preference_pairs run=outputs/<sft run> task=arithmetic n=4000 out=prefs.jsonl
    python -m minigpt.cli.preference_pairs run=... task=reversal task.max_len=8 n=2000 k=8 out=...

The recipe is `minigpt.data.preference_pairs.make_pairs`; the options are the keys of
`conf/preference_pairs.yaml`, and `task` is a config group (conf/task/), so its options are `task.<key>`.
The JSONL file written is what `data=preferences data.path=<out>` reads for stage=reward and stage=dpo.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from minigpt.cli.command import command
from minigpt.data.preference_pairs import make_pairs
from minigpt.utils.io import atomic_write_text


@command("preference_pairs")
def main(cfg: DictConfig) -> list[dict[str, Any]]:
    """Sample, score and pair; write the pairs as JSONL to `cfg.out` and print a summary."""
    started = time.perf_counter()
    pairs = make_pairs(
        cfg.run, instantiate(cfg.task), cfg.n, k=cfg.k, temperature=cfg.temperature,
        max_new_tokens=cfg.max_new_tokens, with_answer=cfg.with_answer, seed=cfg.seed,
    )  # fmt: skip
    atomic_write_text(Path(cfg.out), "".join(json.dumps(pair) + "\n" for pair in pairs))
    mean_margin = sum(pair["margin"] for pair in pairs) / max(1, len(pairs))
    print(
        f"{len(pairs)} pairs from {cfg.n} prompts ({cfg.n - len(pairs)} ties dropped), mean margin "
        f"{mean_margin:.3f}, in {time.perf_counter() - started:.0f} s → {cfg.out}"
    )
    return pairs


if __name__ == "__main__":
    main()
