"""The one decoder-only `Transformer` that every stage shares (GPT-2 and Llama families).

Pre-norm residual blocks (Radford et al. 2019, GPT-2 §2.3): x + attn(norm(x)), then x + ffn(norm(x)).
`forward` returns `(logits, aux)`: `aux` carries what later features add (MoE balancing losses, router
statistics, the final hidden states for reward and value heads), so no stage needs its own copy of a layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from minigpt.model.attention import CausalSelfAttention, KVCacheLike, RopeAngles, RotaryEmbedding
from minigpt.model.config import ModelConfig
from minigpt.model.mlp import build_mlp
from minigpt.model.moe import MoELayer, build_moe_layer
from minigpt.model.residual import is_residual_projection
from minigpt.utils.errors import ConfigError

if TYPE_CHECKING:
    from peft import LoraConfig


def build_norm(config: ModelConfig) -> nn.Module:
    """LayerNorm (with or without bias) or RMSNorm (Zhang & Sennrich 2019), per `config.norm`."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def build_feedforward(config: ModelConfig, layer_idx: int) -> nn.Module:
    """The feed-forward network of block `layer_idx`: dense, or a mixture of experts where configured.

    A feed-forward module returns either a tensor or `(tensor, aux_dict)`; the block merges the aux.
    """
    if config.moe is not None:
        layer = build_moe_layer(config, layer_idx)
        if layer is not None:
            return layer
    return build_mlp(config)


class SoftcappedHead(nn.Linear):
    """The LM head with logit soft-capping: c·tanh(W·h / c) (Gemma 2, Team et al. 2024, §2; modded-nanogpt).

    Logits stay within (−c, c), so no token's logit can run away early in training, which lets the
    embeddings and head take larger steps. A subclass of `nn.Linear` with the same weight, so tying,
    checkpoints and every caller of `model.lm_head(hidden)` (decoding, RL, PPO) get the cap unchanged.
    """

    def __init__(self, in_features: int, out_features: int, cap: float) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.cap = cap

    def forward(self, hidden: Tensor) -> Tensor:
        """(…, C) → capped logits (…, vocab)."""
        return self.cap * torch.tanh(super().forward(hidden) / self.cap)


def _maybe_recompute(recompute: bool, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, through `torch.utils.checkpoint` when `recompute`: its activations are dropped after
    forward and recomputed in backward (Chen et al. 2016). Non-reentrant checkpointing (the recommended
    mode) supports keyword-free calls with non-tensor arguments and restores the RNG, so dropout draws
    the same masks when recomputing and gradients are exactly those of the plain call.
    """
    return checkpoint(fn, *args, use_reentrant=False) if recompute else fn(*args)


class Block(nn.Module):
    """One pre-norm Transformer block.

    With `config.activation_checkpointing` = `attention` or `mlp` (in training) that sublayer is
    recomputed in backward; whole-block recomputation (`true`) is done by `Transformer`, around the block.
    """

    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config  # shared with the Transformer: a later change of the recompute mode applies
        self.attn_norm = build_norm(config)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ffn_norm = build_norm(config)
        self.ffn = build_feedforward(config, layer_idx)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        rope: RopeAngles | None,
        attn_mask: Tensor | None,
        kv_cache: KVCacheLike | None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """(B, T, C) → (B, T, C), plus whatever the feed-forward network reports."""
        # Dropout is the identity outside training, yet calling it costs as much as a small matmul:
        # decoding a nano model one token at a time would spend ~5 % of each step there.
        mode = self.config.activation_checkpointing if self.training else False
        attn_out = _maybe_recompute(mode == "attention", self._attend, x, rope, attn_mask, kv_cache)
        x = x + (self.drop(attn_out) if self.training else attn_out)
        out = _maybe_recompute(mode == "mlp", self._feedforward, x)
        aux: dict[str, Any] = {}
        if isinstance(out, tuple):
            out, aux = out
        return x + (self.drop(out) if self.training else out), aux

    def _attend(
        self, x: Tensor, rope: RopeAngles | None, attn_mask: Tensor | None, kv_cache: KVCacheLike | None
    ) -> Tensor:
        """The attention sublayer without its residual: attn(norm(x))."""
        return self.attn(self.attn_norm(x), rope, attn_mask, kv_cache)

    def _feedforward(self, x: Tensor) -> Tensor | tuple[Tensor, dict[str, Any]]:
        """The feed-forward sublayer without its residual: ffn(norm(x)), with the MoE aux if it has one."""
        return self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """Token embedding → `n_layer` blocks → final norm → language-model head.

    Args of `forward`:
        idx: token ids (B, T).
        positions: absolute position of each token (B, T); defaults to 0..T-1 after whatever the KV
            cache already holds. Left-padded batches pass their own (padding does not count).
        attn_mask: boolean (B|1, 1, T, S), True where a query may attend a key; defaults to causal.
        kv_cache: an object with `length` and `attend(layer, q, k, v, attn_mask)` (`KVCacheLike`), which
            stores each layer's new keys/values and attends (see `minigpt.inference.kv_cache`).
        return_hidden: put the final normalised hidden states (B, T, C) into `aux["hidden"]`.
        inputs_embeds: (B, T, C) input embeddings used instead of `tok_emb(idx)` (`idx` still gives the
            shape and device). A caller that splices other vectors into the sequence (a vision encoder's
            projected patches at `<|image|>` placeholders, `minigpt.model.vision`) passes them here, so the
            trunk has no multimodal branch: it reads whatever embeddings it is given.
    """

    # Set by `minigpt.model.lora.apply_lora` on a model that carries LoRA adapters (absent otherwise).
    lora_config: LoraConfig
    lora_rows_from: int | None

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ConfigError("model.vocab_size is unset; build the model after the tokenizer fixes it.")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd) if config.positions == "learned" else None
        self.rope = (
            RotaryEmbedding(config.head_dim, config.block_size, config.rope_theta)
            if config.positions == "rope"
            else None
        )
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm_f = build_norm(config)
        self.lm_head = (
            nn.Linear(config.n_embd, config.vocab_size, bias=False)
            if config.logit_softcap is None
            else SoftcappedHead(config.n_embd, config.vocab_size, config.logit_softcap)
        )
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight  # Press & Wolf 2017: one matrix in and out
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """N(0, 0.02) everywhere; residual projections N(0, 0.02/√(2·n_layer)), or 0 with `zero_init_proj`.

        The residual stream adds two projections per block, so its variance grows with depth; GPT-2
        (§2.3) scales those weights by 1/√N, N the number of residual additions, to keep it in check.
        Zero (modded-nanogpt; cf. Fixup, Zhang et al. 2019) goes further: every block starts as the identity
        and the network grows its depth from a shallow function. The gradient reaching a zero projection
        is not zero (it is act(h)ᵀ·δ), so it moves at the first step.
        """
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            if is_residual_projection(module):
                std = 0.0 if self.config.zero_init_proj else std / math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)

    def hidden_states(
        self,
        idx: Tensor,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
        kv_cache: KVCacheLike | None = None,
        inputs_embeds: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """Final normalised hidden states (B, T, C) and the aux dict; the trunk without the head.

        Checks that every position fits the context, then runs `hidden_states_at`.
        """
        B, T = idx.shape
        if positions is None:
            start = kv_cache.length if kv_cache is not None else 0
            positions = torch.arange(start, start + T, device=idx.device).unsqueeze(0).expand(B, T)
        if T > self.config.block_size or int(positions.max()) >= self.config.block_size:
            raise ValueError(
                f"Sequence reaches position {int(positions.max())}, beyond model.block_size="
                f"{self.config.block_size}; shorten the input or use a model with a longer context."
            )
        return self.hidden_states_at(idx, positions, attn_mask, kv_cache, inputs_embeds)

    def hidden_states_at(
        self,
        idx: Tensor,
        positions: Tensor,
        attn_mask: Tensor | None,
        kv_cache: KVCacheLike | None,
        inputs_embeds: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """`hidden_states` at `positions` (B, T) the caller keeps below `block_size`, which is not checked.

        Reading the largest position out of the tensor to check it would end a compiled graph; the compiled
        decoding step (`minigpt.inference.compiled`) calls this with positions its decoder keeps in range.
        """
        x = self.embed(idx, positions, inputs_embeds)
        rope = self.rope(positions) if self.rope is not None else None
        x, aux = self.run_blocks(x, rope, attn_mask, kv_cache)
        return self.norm_f(x), aux

    def embed(self, idx: Tensor, positions: Tensor, inputs_embeds: Tensor | None = None) -> Tensor:
        """Token (+ learned position) embeddings of `idx` (B, T) → (B, T, C), with dropout in training;
        `inputs_embeds` (B, T, C), when given, stands in for the token embeddings (image patches:
        docs/multimodal.md)."""
        x = self.tok_emb(idx) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        return self.drop(x) if self.training else x

    def run_blocks(
        self, x: Tensor, rope: RopeAngles | None, attn_mask: Tensor | None, kv_cache: KVCacheLike | None
    ) -> tuple[Tensor, dict[str, Any]]:
        """The residual stream (B, T, C) through every block this model holds (a pipeline stage holds some),
        and the blocks' aux values gathered into lists."""
        aux: dict[str, Any] = {}
        for block in self.blocks:
            # Whole-block recomputation keeps only the block's input (B, T, C) for backward: activation
            # memory falls from ~34·B·T·C per layer to 2·B·T·C (fp16 bytes, Korthikanti et al. 2022 §4)
            # for one extra forward, i.e. ~1/3 more compute.
            recompute = self.training and self.config.activation_checkpointing is True
            x, block_aux = _maybe_recompute(recompute, block, x, rope, attn_mask, kv_cache)
            for key, value in block_aux.items():
                aux.setdefault(key, []).append(value)
        return x, aux

    def forward(
        self,
        idx: Tensor,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
        kv_cache: KVCacheLike | None = None,
        return_hidden: bool = False,
        inputs_embeds: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """Logits (B, T, vocab) and the aux dict."""
        hidden, aux = self.hidden_states(idx, positions, attn_mask, kv_cache, inputs_embeds)
        if return_hidden:
            aux["hidden"] = hidden
        return self.lm_head(hidden), aux

    @torch.no_grad()
    def resize_vocab(self, new_size: int) -> None:
        """Grow the token embedding and LM head to `new_size` rows (e.g. for added chat tokens).

        Old rows keep their values. New rows start at the mean of the old rows plus N(0, init_std) noise
        (Hewitt 2021, "Initializing New Word Embeddings"): at the mean, a new token's logit is the average
        logit, so it does not steal probability from the pretrained distribution; the noise breaks the
        symmetry between the new tokens. A tied head is re-tied to the grown embedding.
        """
        old_size = self.tok_emb.num_embeddings
        if new_size < old_size:
            raise ValueError(f"resize_vocab only grows the vocabulary: {new_size} < {old_size}.")

        def grown(weight: Tensor) -> Tensor:
            extra = weight.mean(0, keepdim=True) + self.config.init_std * torch.randn(
                new_size - old_size, weight.shape[1], device=weight.device, dtype=weight.dtype
            )
            return torch.cat([weight, extra])  # (new_size, C)

        self.tok_emb.weight = nn.Parameter(grown(self.tok_emb.weight))
        self.tok_emb.num_embeddings = new_size
        if self.config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        else:
            self.lm_head.weight = nn.Parameter(grown(self.lm_head.weight))
        self.lm_head.out_features = new_size
        self.config.vocab_size = new_size

    def param_groups(self, weight_decay: float, muon: bool = False) -> list[dict[str, Any]]:
        """Optimizer groups: decay on matrices (≥ 2 dims: linear and embedding weights), none on biases/norms.

        Decaying a norm's gain or a bias pulls it towards 0, which only fights the normalisation. With
        `muon`, the blocks' 2-D weights (the hidden matrices: attention and MLP projections) form a first
        group marked `"muon": True` for `minigpt.optim.muon.MuonAdamW`; the embeddings and the head stay
        with AdamW, as Muon's authors prescribe (docs/speedrun.md).
        """
        hidden: list[nn.Parameter] = []
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, param in self.named_parameters():  # yields a tied matrix once
            if not param.requires_grad:
                continue
            if muon and param.dim() == 2 and name.startswith("blocks."):
                hidden.append(param)
            else:
                (decay if param.dim() >= 2 else no_decay).append(param)
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return [{"params": hidden, "muon": True}, *groups] if muon else groups  # Muon's lr, decay: the optimizer's

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; `non_embedding` drops the token/position tables (Kaplan et al. 2020 count)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            # A pipeline stage (`minigpt.scale.pipeline`) holds only some of the model: absent parts are None.
            for table in (self.tok_emb, self.pos_emb):
                if table is not None:
                    n -= table.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6·N for the matmuls (forward 2N, backward 4N) + 12·L·C·T for attention.

        Kaplan et al. 2020 (Table 1) and PaLM (Chowdhery et al. 2022, App. B); N excludes embeddings but
        includes the LM head, which is a real matmul per token, and counts active MoE experts only.
        """
        n = float(self.num_params(non_embedding=True))
        if self.config.tie_embeddings and self.tok_emb is not None and self.lm_head is not None:
            n += self.lm_head.weight.numel()  # the tied matrix, subtracted above as the embedding
        # Mixture-of-experts layers: count only the experts a token actually visits.
        n -= sum(m.inactive_params() for m in self.modules() if isinstance(m, MoELayer))
        # len(self.blocks): a pipeline stage counts the blocks it runs
        return 6.0 * n + 12.0 * len(self.blocks) * self.config.n_embd * seq_len
