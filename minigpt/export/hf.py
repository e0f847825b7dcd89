"""Hugging Face conversion: our `Transformer` ⇄ `GPT2LMHeadModel` / `LlamaForCausalLM`.

    python -m minigpt.cli.export_hf run=outputs/train/<run> out=exports/my-gpt

writes a folder that `transformers.AutoModelForCausalLM.from_pretrained(out)` loads (config.json,
model.safetensors, generation_config.json) plus our `minigpt_tokenizer.json`. `from_hf` reads such a
folder (or a model object) back. The GPT-2 family maps onto GPT-2, the Llama family onto Llama; the weight
map below is explicit, and conversion fails if any parameter is left without a counterpart.

Two layout facts the map encodes:
* GPT-2 checkpoints store linear layers as `Conv1D` with weight (in, out): the transpose of ours.
* Llama keeps q, k and v as separate projections; ours is one fused (q; k; v) matrix (GQA sizes).

`transformers` is an optional dependency: it is imported inside the functions that need it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer, load_tokenizer
from minigpt.utils.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

TOKENIZER_FILE = "minigpt_tokenizer.json"  # not `tokenizer.json`: that name means a `tokenizers` file to HF


@dataclass(frozen=True)
class Rule:
    """Our module `ours` corresponds to HF module(s) `theirs`; `{i}` stands for the layer index.

    `transpose`: HF stores the weight transposed (GPT-2 `Conv1D`). Several `theirs`: our weight (and
    bias) is their tensors concatenated along the output dimension (the fused qkv projection).
    """

    ours: str
    theirs: tuple[str, ...]
    transpose: bool = False


GPT2_RULES = (
    Rule("tok_emb", ("transformer.wte",)),
    Rule("pos_emb", ("transformer.wpe",)),
    Rule("blocks.{i}.attn_norm", ("transformer.h.{i}.ln_1",)),
    Rule("blocks.{i}.attn.qkv", ("transformer.h.{i}.attn.c_attn",), transpose=True),
    Rule("blocks.{i}.attn.proj", ("transformer.h.{i}.attn.c_proj",), transpose=True),
    Rule("blocks.{i}.ffn_norm", ("transformer.h.{i}.ln_2",)),
    Rule("blocks.{i}.ffn.fc", ("transformer.h.{i}.mlp.c_fc",), transpose=True),
    Rule("blocks.{i}.ffn.proj", ("transformer.h.{i}.mlp.c_proj",), transpose=True),
    Rule("norm_f", ("transformer.ln_f",)),
    Rule("lm_head", ("lm_head",)),
)

LLAMA_RULES = (
    Rule("tok_emb", ("model.embed_tokens",)),
    Rule("blocks.{i}.attn_norm", ("model.layers.{i}.input_layernorm",)),
    Rule(
        "blocks.{i}.attn.qkv",
        (
            "model.layers.{i}.self_attn.q_proj",
            "model.layers.{i}.self_attn.k_proj",
            "model.layers.{i}.self_attn.v_proj",
        ),
    ),
    Rule("blocks.{i}.attn.proj", ("model.layers.{i}.self_attn.o_proj",)),
    Rule("blocks.{i}.ffn_norm", ("model.layers.{i}.post_attention_layernorm",)),
    Rule("blocks.{i}.ffn.gate", ("model.layers.{i}.mlp.gate_proj",)),
    Rule("blocks.{i}.ffn.up", ("model.layers.{i}.mlp.up_proj",)),
    Rule("blocks.{i}.ffn.proj", ("model.layers.{i}.mlp.down_proj",)),
    Rule("norm_f", ("model.norm",)),
    Rule("lm_head", ("lm_head",)),
)


# Our `activation` → HF GPT-2's `activation_function`.
HF_GPT2_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu2": "relu2"}


def family(config: ModelConfig) -> str:
    """'gpt2' or 'llama': the HF architecture that computes exactly what `config` does."""
    if config.moe is not None:
        raise ConfigError("model.moe is set: mixture-of-experts layers have no HF GPT-2/Llama counterpart.")
    if quantized := config.extra.get("quantization"):
        raise ConfigError(
            f"the model is {quantized['method']}-quantized and HF GPT-2/Llama hold float weights; "
            f"export the float model it came from ({quantized.get('source', 'its source')}) instead."
        )
    # Speedrun switches that neither HF GPT-2 nor Llama computes (ReLU², untied and zero-init weights do map).
    if config.qk_norm:
        raise ConfigError(
            "model.qk_norm=true: HF GPT-2 and Llama have no query/key norm (Qwen3 and OLMo 2 do, not exported "
            "here); train with model.qk_norm=false to export."
        )
    if config.logit_softcap is not None:
        raise ConfigError(
            f"model.logit_softcap={config.logit_softcap}: HF GPT-2 and Llama do not soft-cap logits (Gemma 2 does, "
            "not exported here); train with model.logit_softcap=null to export."
        )
    gpt2 = config.norm == "layernorm" and config.positions == "learned" and config.activation != "swiglu"
    if gpt2 and config.bias and config.n_kv_head == config.n_head:
        if config.n_head * config.head_dim != config.n_embd:
            raise ConfigError(
                f"model.attn_head_dim={config.attn_head_dim} × n_head={config.n_head} ≠ n_embd={config.n_embd} "
                "(heads pruned away): HF GPT-2 has no head width of its own; prune MLP neurons instead, or use Llama."
            )
        return "gpt2"
    if config.norm == "rmsnorm" and config.positions == "rope" and config.activation == "swiglu":
        return "llama"
    raise ConfigError(
        f"model (norm={config.norm}, positions={config.positions}, activation={config.activation}, "
        f"bias={config.bias}, n_kv_head={config.n_kv_head}/n_head={config.n_head}) matches neither HF GPT-2 "
        "(layernorm, learned, gelu/gelu_tanh/relu2, bias, n_kv_head=n_head) nor Llama (rmsnorm, rope, swiglu)."
    )


def _rules(config: ModelConfig) -> tuple[Rule, ...]:
    return GPT2_RULES if family(config) == "gpt2" else LLAMA_RULES


def _expand(rules: Sequence[Rule], n_layer: int) -> list[Rule]:
    """One rule per layer for the `{i}` templates."""
    out = []
    for rule in rules:
        layers = range(n_layer) if "{i}" in rule.ours else [None]
        for i in layers:
            fill = (lambda s: s) if i is None else (lambda s, i=i: s.format(i=i))
            out.append(Rule(fill(rule.ours), tuple(fill(t) for t in rule.theirs), rule.transpose))
    return out


def _qkv_sizes(config: ModelConfig) -> list[int]:
    return [
        config.n_head * config.head_dim,
        config.n_kv_head * config.head_dim,
        config.n_kv_head * config.head_dim,
    ]


def to_hf_state_dict(model: Transformer) -> dict[str, Tensor]:
    """Our weights under HF names (GPT-2 or Llama, per the model's family); every parameter must map."""
    config = model.config
    ours = model.state_dict()
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for rule in _expand(_rules(config), config.n_layer):
        for suffix in ("weight", "bias"):
            key = f"{rule.ours}.{suffix}"
            if key not in ours:
                continue
            used.add(key)
            tensor = ours[key]
            parts = tensor.split(_qkv_sizes(config)) if len(rule.theirs) > 1 else (tensor,)
            for name, part in zip(rule.theirs, parts):
                out[f"{name}.{suffix}"] = (part.t() if rule.transpose and part.dim() == 2 else part).contiguous()
    unmapped = sorted(set(ours) - used)
    if unmapped:
        raise ConfigError(f"Parameters {unmapped[:4]} have no Hugging Face counterpart; this model cannot be exported.")
    return out


def from_hf_state_dict(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """The inverse of `to_hf_state_dict`: HF-named weights → our names."""
    out: dict[str, Tensor] = {}
    for rule in _expand(_rules(config), config.n_layer):
        for suffix in ("weight", "bias"):
            names = [f"{name}.{suffix}" for name in rule.theirs]
            if not all(name in state for name in names):
                continue
            parts = [state[n].t() if rule.transpose and state[n].dim() == 2 else state[n] for n in names]
            out[f"{rule.ours}.{suffix}"] = torch.cat(parts).contiguous() if len(parts) > 1 else parts[0].contiguous()
    return out


def to_hf_config(config: ModelConfig, tokenizer: Tokenizer | None = None) -> PretrainedConfig:
    """The HF config (GPT2Config or LlamaConfig) of a model with `config`; special ids from `tokenizer`."""
    from transformers import GPT2Config, LlamaConfig

    ids: dict[str, Any] = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if tokenizer is not None:
        ids = {
            "bos_token_id": tokenizer.bos_id,
            "eos_token_id": tokenizer.eos_id,
            "pad_token_id": tokenizer.pad_id,
        }
    if family(config) == "gpt2":
        return GPT2Config(
            vocab_size=config.vocab_size,
            n_positions=config.block_size,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            n_inner=config.mlp_hidden,
            # HF "gelu_new" is the tanh approximation GPT-2 was trained with; "gelu" is the exact erf form;
            # "relu2" is HF's ReLUSquaredActivation, relu(x)², the same as ours.
            activation_function=HF_GPT2_ACTIVATIONS[config.activation],
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            layer_norm_epsilon=config.norm_eps,
            initializer_range=config.init_std,
            tie_word_embeddings=config.tie_embeddings,
            **ids,
        )
    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.n_embd,
        intermediate_size=config.mlp_hidden,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_kv_head,
        head_dim=config.head_dim,
        hidden_act="silu",
        max_position_embeddings=config.block_size,
        rms_norm_eps=config.norm_eps,
        initializer_range=config.init_std,
        rope_theta=config.rope_theta,
        attention_bias=config.bias,
        mlp_bias=config.bias,
        tie_word_embeddings=config.tie_embeddings,
        **ids,
    )


def from_hf_config(hf: PretrainedConfig) -> ModelConfig:
    """Our `ModelConfig` from a GPT-2 or Llama HF config; anything we cannot compute is a `ConfigError`."""
    if hf.model_type == "gpt2":
        activations = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu2": "relu2"}
        if hf.activation_function not in activations:
            raise ConfigError(f"HF activation_function={hf.activation_function!r} is not supported; use gelu_new.")
        return ModelConfig(
            n_layer=hf.n_layer,
            n_head=hf.n_head,
            n_embd=hf.n_embd,
            block_size=hf.n_positions,
            vocab_size=hf.vocab_size,
            mlp_hidden=hf.n_inner or 4 * hf.n_embd,
            norm="layernorm",
            norm_eps=hf.layer_norm_epsilon,
            activation=activations[hf.activation_function],
            positions="learned",
            bias=True,
            tie_embeddings=hf.tie_word_embeddings,
            init_std=hf.initializer_range,
        )
    if hf.model_type == "llama":
        rope = getattr(hf, "rope_parameters", None) or {"rope_type": "default", "rope_theta": hf.rope_theta}
        if rope.get("rope_type", "default") != "default" or hf.attention_bias != hf.mlp_bias:
            raise ConfigError(
                f"HF Llama with rope {rope} / attention_bias={hf.attention_bias}, "
                f"mlp_bias={hf.mlp_bias} is not "
                "supported; only default RoPE and equal attention/MLP bias settings map onto ModelConfig."
            )
        # A head width other than hidden_size / heads (e.g. heads pruned away) is kept as attn_head_dim.
        head_dim = hf.head_dim if hf.head_dim * hf.num_attention_heads != hf.hidden_size else None
        return ModelConfig(
            n_layer=hf.num_hidden_layers,
            n_head=hf.num_attention_heads,
            n_embd=hf.hidden_size,
            block_size=hf.max_position_embeddings,
            vocab_size=hf.vocab_size,
            n_kv_head=hf.num_key_value_heads,
            attn_head_dim=head_dim,
            mlp_hidden=hf.intermediate_size,
            norm="rmsnorm",
            norm_eps=hf.rms_norm_eps,
            activation="swiglu",
            positions="rope",
            rope_theta=float(rope["rope_theta"]),
            bias=hf.attention_bias,
            tie_embeddings=hf.tie_word_embeddings,
            init_std=hf.initializer_range,
        )
    raise ConfigError(f"HF model_type={hf.model_type!r} is not supported; only gpt2 and llama convert.")


def to_hf(model: Transformer, tokenizer: Tokenizer | None = None) -> PreTrainedModel:
    """An HF `GPT2LMHeadModel` / `LlamaForCausalLM` built from config (no download) with our weights."""
    from transformers import AutoModelForCausalLM

    hf_config = to_hf_config(model.config, tokenizer)
    hf_model = AutoModelForCausalLM.from_config(hf_config)
    state = to_hf_state_dict(model)
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    # A tied head is one tensor with the embedding; anything else missing is a bug in the map.
    missing = [k for k in missing if not (k == "lm_head.weight" and model.config.tie_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"HF weight map incomplete: missing {missing}, unexpected {unexpected}.")
    return hf_model.to(model.tok_emb.weight.device).eval()


def from_hf(source: str | Path | PreTrainedModel) -> tuple[Transformer, Tokenizer | None]:
    """Our model (and tokenizer, if the folder has ours) from an HF folder or a loaded HF model."""
    tokenizer = None
    if isinstance(source, (str, Path)):
        from transformers import AutoModelForCausalLM

        folder = Path(source)
        if not (folder / "config.json").exists():
            raise ConfigError(f"{folder} has no config.json; point at a folder written by save_pretrained / export.")
        source = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        if (folder / TOKENIZER_FILE).exists():
            tokenizer = load_tokenizer(folder / TOKENIZER_FILE)
    config = from_hf_config(source.config)
    model = Transformer(config)
    model.load_state_dict(from_hf_state_dict(source.state_dict(), config), strict=True)
    return model.eval(), tokenizer


def export_hf(model: Transformer, tokenizer: Tokenizer | None, out: str | Path) -> Path:
    """Write an HF folder for `model` at `out`; it appears complete or not at all (written aside, renamed)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "config.json").exists():
        raise ConfigError(f"out={out} exists and is not a previous export; choose a new or empty folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    to_hf(model, tokenizer).save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save(tmp / TOKENIZER_FILE)
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return out
