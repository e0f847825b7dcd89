"""GGUF export: every tensor read back equals the one written, the model rebuilt from the file computes
the same logits, the metadata describes the model; llama.cpp's greedy tokens where its binary exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from minigpt.export.gguf import gguf_tensors, main, read_gguf, write_gguf
from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError

TEXT = "the river runs cold under the old stone bridge.\n"


@pytest.fixture
def llama_folder(tiny_model, tmp_path: Path) -> Path:
    tokenizer = CharTokenizer.train(TEXT)
    model = tiny_model("llama", vocab_size=tokenizer.vocab_size, init_std=0.3)
    return save_model_folder(tmp_path / "model", model, tokenizer)


def test_every_tensor_reads_back_and_the_model_computes_the_same(llama_folder: Path, tmp_path: Path, compose_command):
    out = main(compose_command("export_gguf", f"run={llama_folder}", f"out={tmp_path / 'model.gguf'}"))
    model, tokenizer = load_model_folder(llama_folder)
    written = gguf_tensors(model)
    rebuilt, rebuilt_tokenizer, tensors = read_gguf(out)
    assert sorted(tensors) == sorted(written) and len(tensors) == 3 + 9 * model.config.n_layer
    for name, array in written.items():
        np.testing.assert_array_equal(tensors[name], array, err_msg=name)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    idx = torch.tensor([tokenizer.encode("the old river")])
    torch.testing.assert_close(rebuilt(idx)[0], model(idx)[0], rtol=0, atol=0)
    assert rebuilt_tokenizer is not None and rebuilt_tokenizer.to_json() == tokenizer.to_json()
    reader = gguf.GGUFReader(str(out))
    assert reader.get_field("general.architecture").contents() == "llama"
    assert reader.get_field("llama.context_length").contents() == model.config.block_size
    assert reader.get_field("llama.attention.head_count_kv").contents() == model.config.n_kv_head
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    assert tokens[tokenizer.encode("t")[0]] == "t" and tokens[tokenizer.eos_id] == "<|eos|>"


def test_rope_rows_interleave_each_heads_halves(tiny_model) -> None:
    model = tiny_model("llama")
    tensors = gguf_tensors(model)
    q = model.blocks[0].attn.qkv.weight[: model.config.n_head * model.config.head_dim].detach().numpy()
    hd = model.config.head_dim
    # Row 2i of head h is the HF row i of that head, row 2i+1 is row i + hd/2: adjacent pairs, as llama.cpp rotates.
    np.testing.assert_array_equal(tensors["blk.0.attn_q.weight"][hd + 2], q[hd + 1])
    np.testing.assert_array_equal(tensors["blk.0.attn_q.weight"][hd + 3], q[hd + 1 + hd // 2])


def test_gpt_family_is_refused(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Llama family"):
        write_gguf(tiny_model("gpt"), None, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


LLAMA_CPP = shutil.which("llama-simple") or shutil.which("llama-cli")


@pytest.mark.slow
@pytest.mark.skipif(LLAMA_CPP is None, reason="no llama.cpp binary (llama-simple or llama-cli) on PATH")
def test_llama_cpp_continues_with_our_greedy_tokens(llama_folder: Path, tmp_path: Path) -> None:
    model, tokenizer = load_model_folder(llama_folder)
    out = write_gguf(model, tokenizer, tmp_path / "model.gguf")
    prompt = "the old"
    ours = generate(model, [tokenizer.encode(prompt)], GenerationConfig(max_new_tokens=12, strategy="greedy"))
    expected = tokenizer.decode(ours.token_lists()[0], skip_special=True)
    assert LLAMA_CPP is not None
    args = [LLAMA_CPP, "-m", str(out), "-n", "12"]
    args += [prompt] if LLAMA_CPP.endswith("llama-simple") else ["-p", prompt, "--temp", "0", "-no-cnv"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert prompt + expected in proc.stdout
