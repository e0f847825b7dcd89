"""Expert pruning: route some text through a trained MoE model, keep the most used experts, save.

    python -m minigpt.cli.moe_prune run=outputs/train/<run> keep=4 out=outputs/pruned_4x
    python -m minigpt.cli.moe_prune run=... keep=4 out=... 'text=[my/*.txt]' tokens=50000

Without `text` the usage is measured on the default corpus (Shakespeare's plays). The saved folder is
an ordinary model folder (`init_from`, `evaluate.py` and the chat command read it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor

from minigpt.cli.command import command
from minigpt.data.corpora import Corpus, ShakespearePlays, TextFiles
from minigpt.model.folder import load_model_and_tokenizer, save_model_folder
from minigpt.model.moe_surgery import expert_load, prune_experts
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError


def token_batches(
    corpus: Corpus, tokenizer: Tokenizer, seq_len: int, max_tokens: int, batch_size: int = 16
) -> Iterator[Tensor]:
    """Consecutive (batch, seq_len) windows of the corpus' first `max_tokens` tokens."""
    ids: list[int] = []
    for doc in corpus.documents():
        ids += tokenizer.encode_ordinary(doc)
        if len(ids) >= max_tokens:
            break
    windows = torch.tensor(ids[: max_tokens - max_tokens % seq_len]).view(-1, seq_len)
    if len(windows) == 0:
        raise ConfigError(f"The text has {len(ids)} tokens, fewer than one window of {seq_len}; give more text.")
    yield from windows.split(batch_size)


@command("moe_prune")
@torch.no_grad()
def main(cfg: DictConfig) -> Path:
    """Measure expert usage, prune, save and print what was kept; returns the pruned model's folder."""
    model, tokenizer = load_model_and_tokenizer(cfg.run)
    if model.config.moe is None:
        raise ConfigError(
            f"run={cfg.run} holds a dense model (no experts); moe_prune needs a model trained with model=moe_*."
        )
    corpus = TextFiles(list(cfg.text)) if cfg.text else ShakespearePlays()
    load = expert_load(model, token_batches(corpus, tokenizer, model.config.block_size, cfg.tokens))
    pruned = prune_experts(model, load, cfg.keep)
    folder = save_model_folder(cfg.out, pruned, tokenizer)
    for layer, usage in enumerate(load):
        kept = usage.topk(cfg.keep).indices.sort().values.tolist()
        print(f"MoE layer {layer}: kept experts {kept}, {float(usage[kept].sum()):.1%} of the routing")
    print(f"pruned model: {folder}")
    return folder


if __name__ == "__main__":
    main()
