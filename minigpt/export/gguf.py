"""GGUF export of Llama-family models, for llama.cpp and ollama users.

    python -m minigpt.export.gguf run=outputs/train/<run> out=model.gguf

A GGUF file holds the architecture's hyperparameters as key/value metadata and the tensors under
llama.cpp's names (`blk.0.attn_q.weight` …), written here by the `gguf` package (llama.cpp's own
Python writer). The weights go through the Hugging Face Llama names first (`minigpt.export.hf`), then
gguf's own name map (`gguf.get_tensor_name_map`), so no third table of names is kept here. One layout
change: llama.cpp's Llama rotates adjacent channel pairs (2i, 2i+1) where Hugging Face and we rotate
(i, i + d/2) ("rotate half", `minigpt.model.attention.RotaryEmbedding`); the query and key rows of each
head are therefore interleaved (`_rope_rows`), as llama.cpp's converter does, which leaves q·k unchanged.

The vocabulary is written as llama.cpp's byte-level BPE ("gpt2") vocabulary without merges: every id's
bytes in GPT-2's byte-to-character alphabet, special tokens as control tokens. llama.cpp then decodes
our ids to the same text, and tokenizes text exactly as we do for byte and ASCII character tokenizers;
a learned BPE tokenizer's multi-byte tokens are not produced by its tokenizer (they have no merges).
Our own tokenizer and model config are stored as JSON strings too (`minigpt.tokenizer`,
`minigpt.config`), so that `read_gguf` rebuilds the exact model from the file alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch
from omegaconf import DictConfig

from minigpt.cli.command import command
from minigpt.export.hf import family, from_hf_state_dict, to_hf_state_dict
from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_folder
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer, tokenizer_from_json
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write

ARCH = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]  # "llama"


def _name_map(config: ModelConfig) -> dict[str, str]:
    """Hugging Face Llama tensor name → GGUF tensor name, for every tensor of a model with `config`."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.n_layer)
    out = {}
    for hf_name in to_hf_state_dict(Transformer(config)):
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ConfigError(f"{hf_name} has no GGUF name in llama.cpp's Llama; this model cannot be exported.")
        out[hf_name] = gguf_name
    return out


def _rope_rows(weight: np.ndarray, heads: int, to_gguf: bool) -> np.ndarray:
    """Reorder a q or k projection's rows per head: (i, i + d/2) pairs ⇄ adjacent (2i, 2i+1) pairs."""
    rows = weight.shape[0] // heads // 2
    split = (heads, 2, rows, *weight.shape[1:]) if to_gguf else (heads, rows, 2, *weight.shape[1:])
    return np.ascontiguousarray(weight.reshape(split).swapaxes(1, 2).reshape(weight.shape))


def _heads(config: ModelConfig, hf_name: str) -> int | None:
    """The number of rotated heads of a q or k projection (None for every other tensor)."""
    if hf_name.endswith("q_proj.weight"):
        return config.n_head
    if hf_name.endswith("k_proj.weight"):
        return config.n_kv_head
    return None


def gguf_tensors(model: Transformer) -> dict[str, np.ndarray]:
    """Every weight of a Llama-family `model` under its GGUF name, in llama.cpp's layout (float32)."""
    config = model.config
    if family(config) != "llama":
        raise ConfigError(
            "GGUF export covers the Llama family (norm=rmsnorm, positions=rope, activation=swiglu, e.g. "
            "model=llama_nano); for a GPT-2-family model use python -m minigpt.cli.export_hf."
        )
    names = _name_map(config)
    out = {}
    for hf_name, tensor in to_hf_state_dict(model).items():
        array = tensor.detach().float().cpu().numpy()
        heads = _heads(config, hf_name)
        out[names[hf_name]] = array if heads is None else _rope_rows(array, heads, to_gguf=True)
    return out


def _byte_level(data: bytes) -> str:
    """`data` in GPT-2's byte-to-character alphabet (Radford et al. 2019): how byte-level BPE vocabularies store tokens.

    Printable bytes stand for themselves; the others (control bytes, space, 127-160, 173) get characters 256, 257, ….
    """
    alphabet = {**{b: chr(b) for b in range(33, 127)}, **{b: chr(b) for b in range(161, 256) if b != 173}}
    extra = iter(range(256, 512))
    table = {b: alphabet[b] if b in alphabet else chr(next(extra)) for b in range(256)}
    return "".join(table[b] for b in data)


def write_gguf(model: Transformer, tokenizer: Tokenizer | None, out: str | Path) -> Path:
    """Write `model` (and its tokenizer) as a GGUF file at `out` (atomically); returns the path."""
    config, tensors = model.config, gguf_tensors(model)
    out = Path(out)

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_name(out.stem)
        writer.add_context_length(config.block_size)
        writer.add_embedding_length(config.n_embd)
        writer.add_block_count(config.n_layer)
        writer.add_feed_forward_length(config.mlp_hidden)
        writer.add_head_count(config.n_head)
        writer.add_head_count_kv(config.n_kv_head)
        writer.add_rope_dimension_count(config.head_dim)
        writer.add_rope_freq_base(config.rope_theta)
        writer.add_layer_norm_rms_eps(config.norm_eps)
        writer.add_vocab_size(config.vocab_size)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_string("minigpt.config", json.dumps(config.to_dict()))
        if tokenizer is not None:
            _add_vocabulary(writer, tokenizer, config.vocab_size)
        for name, array in tensors.items():
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    atomic_write(out, write)
    return out


def _add_vocabulary(writer: gguf.GGUFWriter, tokenizer: Tokenizer, vocab_size: int) -> None:
    """The vocabulary as llama.cpp's byte-level BPE without merges (module docstring), and ours as JSON."""
    special = {tokenizer.special_id(token): token for token in tokenizer.special_tokens}
    tokens, kinds = [], []
    for i in range(vocab_size):
        if i in special:
            tokens.append(special[i])
            kinds.append(gguf.TokenType.CONTROL)
        elif i < tokenizer.vocab_size:
            tokens.append(_byte_level(tokenizer.decode_bytes([i])))
            kinds.append(gguf.TokenType.NORMAL)
        else:  # rows of a vocabulary padded beyond the tokenizer's ids
            tokens.append(f"[PAD{i}]")
            kinds.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    writer.add_token_merges([])
    for add, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_id),
        (writer.add_eos_token_id, tokenizer.eos_id),
        (writer.add_pad_token_id, tokenizer.pad_id),
    ):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(False)  # our prompts carry no implicit BOS (minigpt.cli.generate)
    writer.add_string("minigpt.tokenizer", json.dumps(tokenizer.to_json()))


def _metadata_string(reader: gguf.GGUFReader, key: str) -> str | None:
    """A string value of the file's metadata, or None."""
    field = reader.get_field(key)
    return None if field is None else field.contents()


def read_gguf(path: str | Path) -> tuple[Transformer, Tokenizer | None, dict[str, np.ndarray]]:
    """Our model (and tokenizer) rebuilt from a file `write_gguf` wrote, and the file's tensors by name."""
    reader = gguf.GGUFReader(str(path))
    config_json = _metadata_string(reader, "minigpt.config")
    if config_json is None:
        raise ConfigError(f"{path} was not written by minigpt.export.gguf (no minigpt.config metadata).")
    config = ModelConfig.from_dict(json.loads(config_json))
    tensors = {tensor.name: np.array(tensor.data) for tensor in reader.tensors}
    state = {}
    for hf_name, gguf_name in _name_map(config).items():
        array = tensors[gguf_name]
        heads = _heads(config, hf_name)
        state[hf_name] = torch.from_numpy(array if heads is None else _rope_rows(array, heads, to_gguf=False))
    model = Transformer(config)
    model.load_state_dict(from_hf_state_dict(state, config), strict=True)
    tokenizer_json = _metadata_string(reader, "minigpt.tokenizer")
    tokenizer = tokenizer_from_json(json.loads(tokenizer_json)) if tokenizer_json is not None else None
    return model.eval(), tokenizer, tensors


@command("export_gguf")
def main(cfg: DictConfig) -> Path:
    """Write the GGUF file of the model in `cfg.run` to `cfg.out`; returns its path."""
    model, tokenizer = load_model_folder(cfg.run, field="run")
    out = write_gguf(model, tokenizer, cfg.out)
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {ARCH}, float32); run it with llama.cpp: llama-cli -m {out}"
    )
    return out


if __name__ == "__main__":
    main()
