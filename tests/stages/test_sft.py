"""`stage=sft`: grows the vocabulary for chat tokens and learns a task (exact-match rises); LoRA writes
an adapter and a merged model folder."""

import pytest
import torch
from omegaconf import OmegaConf

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


@pytest.fixture
def base_model(tmp_path):
    """A small "pretrained" model folder whose tokenizer has no chat tokens yet."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(ALPHABET + "reverse: ")
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=48, block_size=32, vocab_size=tokenizer.vocab_size))
    return save_model_folder(tmp_path / "base", model, tokenizer)


@pytest.mark.slow
def test_sft_grows_vocab_and_raises_exact_match(base_model, tmp_path, compose_train, compose_eval):
    task = Reversal(seed=1337, min_len=1, max_len=2, alphabet=ALPHABET)
    model, tokenizer = load_model_folder(base_model)
    before = evaluate_tasks(model, tokenizer, [task], split="val", n=12)["reversal"]
    cfg = compose_train(
        "stage=sft", f"init_from={base_model}", *TASK, "data.num_eval=12", "data.pack=true",
        "data.batch_size=16", "optim.lr=3e-3", "trainer.max_steps=300", "trainer.val_check_interval=300",
        toy_data=False,
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
    eval_cfg = compose_eval(f"run={tmp_path / 'run'}", "eval=tasks", "task_prompts=10", "num_samples=0")
    scores = evaluate_run(eval_cfg)["tasks"]
    assert scores["after"] == evaluate_tasks(model, tokenizer, [task], split="test", n=10)
    assert scores["before"]["reversal"] <= 0.1 < 0.5 <= scores["after"]["reversal"], scores


@pytest.mark.slow
def test_lora_sft_writes_adapter_and_merged_model(base_model, tmp_path, compose_train):
    cfg = compose_train(
        "stage=sft", f"init_from={base_model}", *TASK, "lora.r=4", "data.num_eval=4",
        "trainer.max_steps=5", "trainer.val_check_interval=5", toy_data=False,
    )  # fmt: skip
    train(cfg)
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
    model, tokenizer = load_model_folder(tmp_path / "run" / "model")
    assert type(model.blocks[0].attn.qkv) is torch.nn.Linear  # merged: plain layers, no adapters
    base, _ = load_model_folder(base_model)
    # Only the adapters changed the pretrained weights: the old embedding rows are untouched.
    torch.testing.assert_close(model.tok_emb.weight[: base.config.vocab_size], base.tok_emb.weight)
