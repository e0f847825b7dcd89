"""Hugging Face export: equal logits in GPT2LMHeadModel / LlamaForCausalLM, folders that load, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from minigpt.model.folder import save_model_folder
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError

transformers = pytest.importorskip("transformers")
from minigpt.cli.command import require_values  # noqa: E402
from minigpt.cli.export_hf import main  # noqa: E402
from minigpt.export.hf import export_hf, family, from_hf, to_hf  # noqa: E402

VARIANTS = {
    "gpt2": ("gpt", {}),
    "gpt2-exact-gelu-untied": ("gpt", dict(activation="gelu", tie_embeddings=False)),
    # Speedrun switches HF computes: ReLU² (HF "relu2"), untied head, zero-initialised projections.
    "gpt2-relu2": ("gpt", dict(activation="relu2")),
    "gpt2-untied-zero-init-proj": ("gpt", dict(tie_embeddings=False, zero_init_proj=True)),
    "llama-gqa": ("llama", {}),
    "llama-mqa-bias-tied": ("llama", dict(n_kv_head=1, bias=True, tie_embeddings=True, rope_theta=500.0)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_hf_model_gives_the_same_logits(tiny_model, variant: str) -> None:
    name, overrides = VARIANTS[variant]
    model = tiny_model(name, init_std=0.3, **overrides)
    hf = to_hf(model)
    assert type(hf).__name__ == ("GPT2LMHeadModel" if name == "gpt" else "LlamaForCausalLM")
    idx = torch.randint(0, 64, (2, 40))
    with torch.no_grad():
        diff = (model(idx)[0] - hf(idx).logits).abs().max()
    assert diff < 1e-4
    assert from_hf(hf)[0].config.to_dict() == {**model.config.to_dict(), "zero_init_proj": False}


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_cli_export_loads_in_transformers_and_round_trips(
    tiny_model, tmp_path: Path, name: str, compose_command
) -> None:
    tokenizer = CharTokenizer.train("hello world")
    model = tiny_model(name, init_std=0.3, vocab_size=tokenizer.vocab_size)
    save_model_folder(tmp_path / "run" / "model", model, tokenizer)
    out = main(compose_command("export_hf", f"run={tmp_path / 'run'}", f"out={tmp_path / 'hf'}"))
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert loaded.config.eos_token_id == tokenizer.eos_id
    idx = torch.tensor([tokenizer.encode("hello world")])
    with torch.no_grad():
        assert (loaded(idx).logits - model(idx)[0]).abs().max() < 1e-4
    back, back_tokenizer = from_hf(out)
    assert back.config.to_dict() == model.config.to_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    assert back_tokenizer is not None and back_tokenizer.to_json() == tokenizer.to_json()
    # Exporting again replaces the folder.
    main(compose_command("export_hf", f"run={tmp_path / 'run'}", f"out={tmp_path / 'hf'}"))


# Speedrun switches (docs/speedrun.md) that the target HF family does not compute: the export names the switch.
REFUSED_SWITCHES = {
    "gpt2-qk-norm": ("gpt", dict(qk_norm=True), r"model.qk_norm=true"),
    "gpt2-softcap": ("gpt", dict(logit_softcap=30.0), r"model.logit_softcap=30.0"),
    "gpt2-rope": ("gpt", dict(positions="rope"), r"positions=rope"),
    "llama-relu2": ("llama", dict(activation="relu2"), r"activation=relu2"),
    "llama-softcap": ("llama", dict(logit_softcap=30.0), r"model.logit_softcap=30.0"),
}


@pytest.mark.parametrize("variant", sorted(REFUSED_SWITCHES))
def test_switches_without_an_hf_counterpart_are_refused_by_name(tiny_model, variant: str) -> None:
    name, overrides, message = REFUSED_SWITCHES[variant]
    model = tiny_model(name, **overrides)
    with pytest.raises(ConfigError, match=message):
        to_hf(model)


def test_unmappable_models_and_folders_are_refused(tiny_model, tmp_path: Path, compose_command) -> None:
    with pytest.raises(ConfigError, match="neither"):
        family(tiny_model("gpt", norm="rmsnorm").config)  # RMSNorm with learned positions: no HF class
    with pytest.raises(ConfigError, match="neither"):
        family(tiny_model("gpt", n_kv_head=2).config)  # GPT-2 has no grouped-query attention
    # Speedrun switches without an HF GPT-2/Llama counterpart: one sentence naming the switch and the fix.
    with pytest.raises(ConfigError, match="model.qk_norm=true.*model.qk_norm=false"):
        family(tiny_model("llama", qk_norm=True).config)
    with pytest.raises(ConfigError, match="model.logit_softcap=15.0.*logit_softcap=null"):
        to_hf(tiny_model("gpt", logit_softcap=15.0))
    with pytest.raises(ConfigError, match="moe"):
        family(tiny_model("llama", moe={"num_experts": 2, "top_k": 1, "renormalize": False}).config)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="out="):
        export_hf(tiny_model("gpt"), None, tmp_path / "taken")
    with pytest.raises(ConfigError, match="config.json"):
        from_hf(tmp_path / "taken")
    with pytest.raises(ConfigError, match="out"):
        require_values(compose_command("export_hf", f"run={tmp_path}"))
