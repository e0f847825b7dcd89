"""Stages stand on `Stage`, never on another stage; the task wrapper hands each stage its data before fit."""

import importlib
import inspect
import pkgutil

import pytest
from preference_fixtures import OPTIM, MoreA, base_model_folder, write_pairs

import minigpt.stages
from minigpt.data.preferences import PreferenceDataModule
from minigpt.data.prompts import PromptDataModule
from minigpt.model.folder import load_model_folder
from minigpt.stages.base import Stage
from minigpt.stages.inputs import fit_context, prepare_fit, stage_inputs
from minigpt.stages.sft import SFTStage
from minigpt.utils.errors import ConfigError


def stage_classes() -> list[type[Stage]]:
    """Every `Stage` subclass defined in a module of `minigpt.stages`."""
    found = []
    for info in pkgutil.iter_modules(minigpt.stages.__path__):
        module = importlib.import_module(f"minigpt.stages.{info.name}")
        found += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    return [c for c in found if issubclass(c, Stage) and c is not Stage]


def test_no_stage_subclasses_another_stage():
    classes = stage_classes()
    assert {"PretrainStage", "SFTStage", "RewardStage", "DPOStage", "PPOStage", "UpcycleStage"} <= {
        c.__name__ for c in classes
    }
    for cls in classes:
        stage_bases = [b for b in cls.__bases__ if issubclass(b, Stage)]
        assert stage_bases == [Stage], f"{cls.__name__} stands on {stage_bases}, not on Stage alone"


def test_fit_context_fills_a_null_seq_len_and_refuses_a_longer_one(tmp_path):
    dm = PreferenceDataModule(path=str(write_pairs(tmp_path / "p.jsonl", 8)), batch_size=4)
    fit_context(dm, 32)
    assert dm.seq_len == 32
    dm.seq_len = 40
    with pytest.raises(ConfigError, match="data.seq_len=40 exceeds the model's context block_size=32"):
        fit_context(dm, 32)


def test_stage_inputs_carry_tasks_prompt_lengths_and_pair_loaders(tmp_path):
    _, tokenizer = load_model_folder(base_model_folder(tmp_path / "base"))
    prompts = PromptDataModule(tasks={"more_a": MoreA()}, num_train=8, num_val=4, batch_size=4)
    prompts.attach_tokenizer(tokenizer)
    inputs = stage_inputs(prompts)
    assert inputs.source == "PromptDataModule" and list(inputs.tasks) == ["more_a"]
    assert inputs.longest_prompt == prompts.longest_prompt() and inputs.pair_batches is None
    assert next(inputs.demonstrations())["input_ids"].shape[0] == 4  # batches of the data's batch size
    pairs = PreferenceDataModule(path=str(write_pairs(tmp_path / "p.jsonl", 8)), batch_size=4, val_fraction=0.25)
    pairs.attach_tokenizer(tokenizer)
    pairs.seq_len = 32
    inputs = stage_inputs(pairs)
    assert inputs.longest_prompt is None and sum(len(b["index"]) for b in inputs.pair_batches("val")) == 2


def test_prepare_fit_hands_the_sft_stage_its_tasks(tmp_path):
    folder = base_model_folder(tmp_path / "base")
    stage = SFTStage(model_config=None, optim=OPTIM, init_from=str(folder))
    prompts = PromptDataModule(tasks={"more_a": MoreA()}, num_train=8, num_val=4, batch_size=4)
    prompts.attach_tokenizer(stage.tokenizer)
    assert stage.inputs.tasks == {}
    prepare_fit(stage, prompts)
    assert list(stage.inputs.tasks) == ["more_a"]
