"""`stage=cai_sl`: the composed stage builds its constitution; a tiny run revises, writes every step and
learns the revisions (its samples violate the principle less after training)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from preference_fixtures import OPTIM

from minigpt.alignment.constitution import Constitution, Principle
from minigpt.alignment.judges import Judge, Verdict
from minigpt.alignment.red_team import make_red_team, write_red_team
from minigpt.data.chat import ChatDataModule
from minigpt.model.config import ModelConfig
from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.stages.cai_sl import CaiSLStage
from minigpt.stages.inputs import StageInputs, prepare_fit
from minigpt.tasks import Arithmetic
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError


class LetterJudge(Judge):
    """A principle a random model violates all the time: the share of the reply that is not the letter `a`."""

    def judge(self, prompt: str, reply: str) -> Verdict:
        share = 1 - reply.count("a") / len(reply) if reply else 1.0
        return Verdict(share, ("not a",) * bool(share))

    def repair(self, prompt: str, reply: str) -> str:
        return "a" * len(reply)


CONSTITUTION = Constitution((Principle("only_a", LetterJudge(), "the reply says {evidence}", "best_of_k"),))


def test_composed_stage_builds_the_default_constitution(compose_train) -> None:
    cfg = compose_train("stage=cai_sl", "constitution=default")
    constitution = instantiate(cfg.stage.constitution)
    assert isinstance(constitution, Constitution) and len(constitution.principles) == 5


def fit(tmp_path: Path, steps: int) -> tuple[CaiSLStage, Path]:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(string.ascii_lowercase + string.digits + " ?:,.'@")
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=tokenizer.vocab_size))
    folder = save_model_folder(tmp_path / "base", model, tokenizer)
    write_red_team(tmp_path / "red", make_red_team(80, "kqzvw", []))
    dm = ChatDataModule(tasks={"arithmetic": Arithmetic()}, num_train=64, num_val=16, num_eval=8, batch_size=16, seed=0)
    dm.attach_tokenizer(tokenizer)
    stage = CaiSLStage(
        model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=str(folder), constitution=CONSTITUTION,
        red_team=str(tmp_path / "red"), revise_prompts=48, rounds=2, num_candidates=6, revision_weight=0.8,
        revision_batch_size=16, max_new_tokens=8, eval_red_team=8,
    )  # fmt: skip
    trainer = L.Trainer(
        max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1, val_check_interval=steps,
        check_val_every_n_epoch=None, default_root_dir=str(tmp_path / "run"),
    )  # fmt: skip
    prepare_fit(stage, dm)
    trainer.fit(stage, datamodule=dm)
    return stage, tmp_path / "run" / "cai_sl"


def mean_violation(stage: CaiSLStage, prompts: list[str]) -> float:
    replies = [r for group in stage.sample(prompts, 4) for r in group]
    return sum(LetterJudge()("", r) for r in replies) / len(replies)


def test_tiny_run_revises_writes_every_step_and_learns_the_revisions(tmp_path: Path) -> None:
    stage, out = fit(tmp_path, steps=40)
    records = [json.loads(line) for line in (out / "revisions.jsonl").read_text().splitlines()]
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert len(records) == 48 and all(r["violation_after"] <= r["violation_before"] for r in records)
    before = sum(r["violation_before"] for r in records) / 48
    after = sum(r["violation_after"] for r in records) / 48
    assert after < before - 0.05, (before, after)  # best of 6 under the judge, two rounds
    assert 1 in {s["round"] for s in steps} <= {1, 2} and all(s["critique"] == "the reply says not a" for s in steps)
    prompts = [r["messages"][0]["content"] for r in records]
    trained = mean_violation(stage, prompts)
    assert trained < before - 0.03, (before, after, trained)  # the trained model samples more a's than at first


def test_chat_data_is_required(tmp_path: Path) -> None:
    tokenizer = CharTokenizer.train("ab")
    stage = CaiSLStage(
        model_config=ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=16, vocab_size=tokenizer.vocab_size),
        optim=OPTIM, tokenizer=tokenizer, constitution=CONSTITUTION,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="use data=tasks/mix"):
        stage.attach_data(StageInputs(source="PromptDataModule"))


def test_val_violation_uses_the_val_split_when_the_folder_has_one(tmp_path: Path) -> None:
    """Choices are made on `val.jsonl`: `val/violation` reads it when present, and the test split only without it."""
    from types import SimpleNamespace

    split = CaiSLStage.held_out_split.fget  # type: ignore[attr-defined]
    write_red_team(tmp_path / "old", make_red_team(40, "kqzvw", []))
    write_red_team(tmp_path / "new", make_red_team(40, "kqzvw", [], val_fraction=0.25))
    assert split(SimpleNamespace(red_team=str(tmp_path / "old"))) == "test"
    assert split(SimpleNamespace(red_team=str(tmp_path / "new"))) == "val"
    assert split(SimpleNamespace(red_team=None)) == "test"
