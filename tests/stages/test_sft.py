"""`stage=sft`: grows the vocabulary for chat tokens and learns a task (exact-match rises); LoRA writes
an adapter and a merged model folder."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from minigpt.evaluation.report import evaluate_run
from minigpt.evaluation.tasks import evaluate_tasks
from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.run import train
from minigpt.tasks.reversal import Reversal
from minigpt.tokenizer.char import CharTokenizer

ALPHABET = "abcdefghijkl"
TASK = ["data=tasks/reversal", "data.tasks.reversal.min_len=1", "data.tasks.reversal.max_len=2",
        f"data.tasks.reversal.alphabet={ALPHABET}", "data.num_train=100", "data.num_val=12"]  # fmt: skip


CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def compose_sft(tmp_path: Path, *overrides: str) -> DictConfig:
    """`train.yaml` with stage=sft and a short quiet run under `tmp_path` (the shared `compose_train`
    fixture pins a text corpus, which a chat datamodule does not have)."""
    GlobalHydra.instance().clear()
    base = ["stage=sft", "trainer.max_steps=20", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", "callbacks.progress_bar=null", "callbacks.samples.num_samples=0",
            "final_samples=0", "logger=csv"]  # fmt: skip
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*base, *overrides], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.trainer.default_root_dir = str(tmp_path / "run")
        del cfg["hydra"]
    return cfg


@pytest.fixture
def base_model(tmp_path):
    """A small "pretrained" model folder whose tokenizer has no chat tokens yet."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(ALPHABET + "reverse: ")
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=48, block_size=32, vocab_size=tokenizer.vocab_size))
    return save_model_folder(tmp_path / "base", model, tokenizer)


@pytest.mark.slow
def test_sft_grows_vocab_and_raises_exact_match(base_model, tmp_path):
    task = Reversal(seed=1337, min_len=1, max_len=2, alphabet=ALPHABET)
    model, tokenizer = load_model_folder(base_model)
    before = evaluate_tasks(model, tokenizer, [task], split="val", n=12)["reversal"]
    cfg = compose_sft(
        tmp_path, f"init_from={base_model}", *TASK, "data.num_eval=12", "data.pack=true",
        "data.batch_size=16", "optim.lr=3e-3", "trainer.max_steps=300", "trainer.val_check_interval=300",
    )  # fmt: skip
    metrics = train(cfg)
    model, tokenizer = load_model_folder(tmp_path / "run" / "model")
    assert "<|assistant|>" in tokenizer.special_tokens and model.config.vocab_size == tokenizer.vocab_size
    after = evaluate_tasks(model, tokenizer, [task], split="val", n=12)["reversal"]
    assert metrics["val/score/reversal"] == pytest.approx(after)
    assert before <= 0.1 and after >= 0.5, (before, after)

    # `evaluate.py run=<sft run> eval=tasks` reports held-out test scores before (init_from) and after.
    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        eval_cfg = compose(config_name="evaluate", overrides=[
            f"run={tmp_path / 'run'}", "eval=tasks", "task_prompts=10", "num_samples=0"])  # fmt: skip
    scores = evaluate_run(eval_cfg)["tasks"]
    assert scores["after"] == evaluate_tasks(model, tokenizer, [task], split="test", n=10)
    assert scores["before"]["reversal"] <= 0.1 < 0.5 <= scores["after"]["reversal"], scores


@pytest.mark.slow
def test_lora_sft_writes_adapter_and_merged_model(base_model, tmp_path):
    cfg = compose_sft(
        tmp_path, f"init_from={base_model}", *TASK, "lora.r=4", "data.num_eval=4",
        "trainer.max_steps=5", "trainer.val_check_interval=5",
    )  # fmt: skip
    train(cfg)
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
    model, tokenizer = load_model_folder(tmp_path / "run" / "model")
    assert type(model.blocks[0].attn.qkv) is torch.nn.Linear  # merged: plain layers, no adapters
    base, _ = load_model_folder(base_model)
    # Only the adapters changed the pretrained weights: the old embedding rows are untouched.
    torch.testing.assert_close(model.tok_emb.weight[: base.config.vocab_size], base.tok_emb.weight)
