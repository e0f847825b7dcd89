"""Config mistakes fail before training with the field, what it expects and an example of the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from minigpt.model.folder import resolve_model_folder
from minigpt.run import train
from minigpt.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("override", "field", "expected"),
    [
        ("trainer.max_steps=abc", "trainer.max_steps", "an integer"),
        ("trainer.val_check_interval=often", "trainer.val_check_interval", "an integer"),
        ("optim.lr=fast", "optim.lr", "a number"),
        ("seed=x", "seed", "an integer"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_field_and_the_type(compose_train, override, field, expected):
    with pytest.raises(ConfigError) as err:
        train(compose_train(override))
    message = str(err.value)
    assert message.startswith(f"{field}=") and expected in message


def test_a_missing_value_says_which_option_to_set_with_an_example(compose_train):
    with pytest.raises(ConfigError) as err:
        train(compose_train("data=preferences", toy_data=False))
    assert "data.path is not set" in str(err.value) and "e.g. data.path=" in str(err.value)


def test_an_unknown_data_choice_lists_the_nested_tasks_and_prompts_options(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "data=nope"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    output = proc.stderr + proc.stdout
    assert "data=nope" in output
    for option in ("shakespeare_plays", "tasks/arithmetic", "prompts/arithmetic"):
        assert option in output, option


def test_the_init_from_example_is_the_real_run_folder_layout(tmp_path):
    with pytest.raises(ConfigError) as err:
        resolve_model_folder(tmp_path / "nothing")
    # conf/hydra/default.yaml + conf/paths/default.yaml: outputs/<task_name>/<date>_<time>; the model is in model/
    assert "outputs/<task_name>/<date>_<time>/model" in str(err.value)
