"""Preparing a model for chat stages (SFT, reward, DPO, PPO, and those to come): chat tokens and LoRA.

`ChatModel.prepare(model, tokenizer, lora, stage)` adds the chat special tokens to the tokenizer (if
missing) and grows the model's embedding to match, then, when `lora.r > 0`, injects LoRA adapters
(`minigpt.model.lora`): only the adapters and the new token rows train. The returned `ChatModel` remembers
whether LoRA is on and gives the stage what differs with it: the optimizer's parameter groups, the merged
model, the model folder (merged model + adapter alone in `../adapter`), and a reference model — a frozen
copy, or with LoRA the policy itself with its adapters switched off (no second copy in memory).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import add_chat_tokens
from minigpt.utils.errors import ConfigError
from minigpt.utils.modes import eval_mode


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` that never trains: no gradients, eval mode."""
    return copy.deepcopy(model).requires_grad_(False).eval()


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """`model` with every LoRA adapter switched off (the base model) inside the block."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield model
    finally:
        for layer in layers:
            layer.enable_adapters(True)


@dataclass
class ChatModel:
    """What `prepare` did to a stage's model: whether LoRA adapters train instead of every weight.

    Attributes:
        lora: LoRA is on (`lora.r > 0`).
        trainable_fraction: trained parameters / the base model's parameters (1.0 for full fine-tuning).
    """

    lora: bool = False
    trainable_fraction: float = 1.0

    @classmethod
    def prepare(
        cls, model: Transformer, tokenizer: Tokenizer | None, lora: Mapping[str, Any] | None, stage: str
    ) -> ChatModel:
        """Add the chat tokens (embedding grown in place) and apply LoRA if `lora.r > 0`.

        Args:
            lora: {r, alpha, dropout, target_modules, bias, train_embedding}; `r: 0` trains every weight;
                `bias` and `train_embedding` also train biases and the whole (tied) token embedding.
            stage: the stage's name, for the error when there is no tokenizer.
        """
        if tokenizer is None:
            raise ConfigError(f"stage={stage} has no tokenizer; set init_from=<model folder> or tokenizer.path.")
        old_vocab = model.config.vocab_size
        add_chat_tokens(tokenizer)  # idempotent: the datamodule usually added them already
        grown = tokenizer.vocab_size > old_vocab
        if grown:
            model.resize_vocab(tokenizer.vocab_size)
        if not (lora and lora.get("r", 0)):
            return cls()
        from minigpt.model.lora import apply_lora, lora_config, trainable_parameters  # imports peft

        config = lora_config(
            lora["r"], lora["alpha"], lora["dropout"], lora["target_modules"], lora.get("bias", "none")
        )
        # train_embedding: every row trains, not just the new chat tokens (see `minigpt.model.lora`).
        rows_from = 0 if lora.get("train_embedding", False) else (old_vocab if grown else None)
        apply_lora(model, config, train_rows_from=rows_from)
        base = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
        trained = trainable_parameters(model)
        rank_zero_info(
            f"LoRA r={config.r}: {trained:,} trained parameters, {100 * trained / base:.2f}% of the model's {base:,}."
        )
        return cls(lora=True, trainable_fraction=trained / base)

    def param_groups(self, model: Transformer, weight_decay: float) -> list[dict[str, Any]]:
        """Full fine-tuning: the model's groups; LoRA: adapters (decayed) and new token rows (not)."""
        if not self.lora:
            return model.param_groups(weight_decay)
        from minigpt.model.lora import lora_param_groups

        return lora_param_groups(model, weight_decay)

    def merged(self, model: Transformer) -> Transformer:
        """The plain model to save: `model` itself, or with LoRA a copy with the adapters folded in."""
        if not self.lora:
            return model
        from minigpt.model.lora import merge_lora

        return merge_lora(model)

    def save(self, folder: str | Path, model: Transformer, tokenizer: Tokenizer | None) -> Path:
        """The model folder; with LoRA, the merged model there and the adapter alone in `../adapter`."""
        folder = Path(folder)
        if self.lora:
            from minigpt.model.lora import save_adapter

            save_adapter(folder.parent / "adapter", model, tokenizer)
        return save_model_folder(folder, self.merged(model), tokenizer)

    def frozen_reference(self, model: Transformer) -> Transformer | None:
        """The reference to keep beside `model`: a frozen copy; None with LoRA (adapters off instead)."""
        return None if self.lora else frozen_copy(model)  # type: ignore[return-value]

    @contextlib.contextmanager
    def reference(self, model: Transformer, kept: Transformer | None) -> Iterator[nn.Module]:
        """The reference in eval mode: `kept` (from `frozen_reference`), or `model` with its adapters off."""
        if kept is not None:
            with eval_mode(kept):
                yield kept
            return
        with adapters_disabled(model), eval_mode(model):
            yield model
