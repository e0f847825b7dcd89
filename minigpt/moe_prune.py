"""Expert pruning: route some text through a trained MoE model, keep the most used experts, save.

    python -m minigpt.moe_prune --model outputs/<run>/model --keep 4 --out outputs/pruned_4x
    python -m minigpt.moe_prune --model ... --keep 4 --out ... --text 'my/*.txt' --tokens 50000

Without `--text` the usage is measured on the default corpus (Shakespeare's plays). The saved folder is
an ordinary model folder (`init_from`, `evaluate.py` and the chat CLI read it).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch
from torch import Tensor

from minigpt.data.corpora import Corpus, ShakespearePlays, TextFiles
from minigpt.model.folder import load_model_folder, save_model_folder
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


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, measure expert usage, prune, save and print what was kept."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model or run folder of a trained MoE model")
    parser.add_argument("--keep", type=int, required=True, help="experts to keep per MoE layer")
    parser.add_argument("--out", required=True, help="folder for the pruned model")
    parser.add_argument("--text", nargs="*", help="text files or globs to measure usage on")
    parser.add_argument("--tokens", type=int, default=20000, help="tokens of text to route")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    model, tokenizer = load_model_folder(args.model)
    if tokenizer is None:
        raise ConfigError(f"{args.model} has no tokenizer.json; pruning needs it to encode the text.")
    corpus = TextFiles(args.text) if args.text else ShakespearePlays()
    load = expert_load(model, token_batches(corpus, tokenizer, model.config.block_size, args.tokens))
    pruned = prune_experts(model, load, args.keep)
    folder = save_model_folder(args.out, pruned, tokenizer)
    for layer, usage in enumerate(load):
        kept = usage.topk(args.keep).indices.sort().values.tolist()
        print(f"MoE layer {layer}: kept experts {kept}, {float(usage[kept].sum()):.1%} of the routing")
    print(f"pruned model: {folder}")


if __name__ == "__main__":
    main()
