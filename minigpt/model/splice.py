"""One path for every non-text input: encoder vectors take the places of a placeholder token in the LM's input.

A modality (images, audio) is an encoder that turns each item into N vectors of the LM's width, and a
placeholder token (`<|image|>`, `<|audio|>`) of which the rendered prompt holds exactly N per item. The
LM runs on its own token embeddings with the placeholder rows overwritten, in reading order, by the
encoder's vectors (LLaVA, Liu et al. 2023, §4.1: x_t = H[j] for the j-th placeholder), through the
`Transformer`'s `inputs_embeds` argument — the LM has no branch per modality. `splice_placeholders` is
that overwrite, for images (`minigpt.model.vision.splice_images`) and audio alike; `SplicedLM` is the
composition LM + encoder + splice + greedy decoding, which `SpeechLanguageModel` (minigpt.model.speech) stands
on (`VisionLanguageModel` keeps its own class for now: its MoT routing and cross-attention fusion wrap the
same calls).

Encoders are built from the LM's own `Block`s (`bidirectional_blocks`): the same attention, MLP and norms,
attending in both directions because they are given an all-True mask instead of the causal default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Block, Transformer, build_norm


def splice_placeholders(
    embeds: Tensor, input_ids: Tensor, placeholder_id: int, vectors: Tensor, token: str, items: str = "items"
) -> Tensor:
    """`embeds` (B, T, C) with its `token` positions overwritten, in reading order, by the rows of `vectors`
    (n_items, N, C): item 0's N vectors go to the first N placeholders, and so on. `token` and `items` (the
    items' plural noun: "images", "clips") only word the error.

    A count mismatch (placeholders ≠ n_items · N) is refused: nothing is dropped or repeated silently.
    """
    where = input_ids == placeholder_id  # (B, T)
    flat = vectors.reshape(-1, vectors.shape[-1]).to(embeds.dtype)  # (n_items·N, C)
    found = int(where.sum())
    if found != flat.shape[0]:
        n_items, per_item = vectors.shape[:2] if vectors.dim() == 3 else (0, 0)
        raise ValueError(
            f"The batch has {found} {token} placeholders but {n_items} {items} × {per_item} tokens = "
            f"{flat.shape[0]} vectors; each of the {items} needs exactly {per_item} placeholders."
        )
    # masked_scatter fills the True positions row-major, i.e. in reading order; gradients flow to both inputs.
    return embeds.masked_scatter(where.unsqueeze(-1), flat)


def bidirectional_blocks(n_layer: int, n_head: int, n_embd: int, num_tokens: int) -> tuple[nn.ModuleList, nn.Module]:
    """`n_layer` of the LM's `Block`s (GPT-2 style, width `n_embd`) and their final norm, for an encoder of up
    to `num_tokens` positions; run them with `run_bidirectional`."""
    config = ModelConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=num_tokens)
    return nn.ModuleList(Block(config, i) for i in range(n_layer)), build_norm(config)


def run_bidirectional(blocks: nn.ModuleList, norm: nn.Module, x: Tensor, mask: Tensor) -> Tensor:
    """(B, N, d) through `blocks` under `mask` ((1, 1, N, N) all True: every position sees every other), normed."""
    for block in blocks:
        x, _ = block(x, None, mask, None)
    return norm(x)


class SplicedLM(nn.Module):
    """The LM reading a modality's vectors at its placeholders: `forward(input_ids, media)` → the LM's (logits, aux).

    Subclasses set `token` (the placeholder's text), `items` (their plural noun) and implement `encode(media)`
    → (n_items, N, C).
    """

    token = ""
    items = "items"

    def __init__(self, lm: Transformer, placeholder_id: int) -> None:
        super().__init__()
        self.lm, self.placeholder_id = lm, placeholder_id

    def encode(self, media: Tensor) -> Tensor:
        """The modality's items → (n_items, N, C) vectors in the LM's embedding space."""
        raise NotImplementedError

    def embed(self, input_ids: Tensor, media: Tensor | None) -> Tensor:
        """The LM's token embeddings (B, T, C) with the encoded items at the placeholders."""
        return self.embed_vectors(input_ids, None if media is None or media.shape[0] == 0 else self.encode(media))

    def embed_vectors(self, input_ids: Tensor, vectors: Tensor | None) -> Tensor:
        """As `embed`, from already encoded items (n_items, N, C) (a model that reuses its encoder's output)."""
        embeds = self.lm.tok_emb(input_ids)
        if vectors is None:
            if bool((input_ids == self.placeholder_id).any()):
                raise ValueError(f"The batch has {self.token} placeholders but no {self.items}.")
            return embeds
        return splice_placeholders(embeds, input_ids, self.placeholder_id, vectors, self.token, self.items)

    def forward(
        self,
        input_ids: Tensor,
        media: Tensor | None = None,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """Logits (B, T, vocab) and aux of the LM on the spliced embeddings."""
        embeds = self.embed(input_ids, media)
        return self.lm(input_ids, positions=positions, attn_mask=attn_mask, inputs_embeds=embeds)

    @torch.no_grad()
    def greedy(self, prompt: list[int], media: Tensor | None, stop_id: int, max_new_tokens: int) -> list[int]:
        """Greedy continuation of one prompt (with its items) until `stop_id` or `max_new_tokens`.

        Each step reruns the whole (short) sequence: the KV-cache decoder (`minigpt.inference`) takes token
        ids only, and answers here are a few tokens long, so recomputing the prefix costs little.
        """
        ids = torch.tensor([prompt], device=self.lm.tok_emb.weight.device)
        out: list[int] = []
        for _ in range(max_new_tokens):
            if ids.shape[1] >= self.lm.config.block_size:
                break
            logits, _ = self(ids, media)
            token = int(logits[0, -1].argmax())
            if token == stop_id:
                break
            out.append(token)
            ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)
        return out

    @torch.no_grad()
    def greedy_batch(self, prompts: Tensor, vectors: Tensor, stop_id: int, max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations of equal-length prompts (B, T0) whose items are already encoded (`vectors`,
        (n_items, N, C)): the encoder runs once, not once per generated token. Each row stops at `stop_id`."""
        ids, done = prompts, torch.zeros(prompts.shape[0], dtype=torch.bool, device=prompts.device)
        out: list[list[int]] = [[] for _ in range(prompts.shape[0])]
        for _ in range(max_new_tokens):
            if ids.shape[1] >= self.lm.config.block_size or bool(done.all()):
                break
            logits, _ = self.lm(ids, inputs_embeds=self.embed_vectors(ids, vectors))
            tokens = logits[:, -1].argmax(-1)  # (B,)
            done |= tokens == stop_id
            for row, token in enumerate(tokens.tolist()):
                if not done[row]:
                    out[row].append(token)
            ids = torch.cat([ids, tokens[:, None]], dim=1)
        return out
