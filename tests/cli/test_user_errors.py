"""A user's mistake, at every entry point, prints one sentence (no traceback) and exits with status 2.

Most cases run the command in this process (as `python …` would, through Hydra's argument parsing) to
stay quick; one case per entry point runs it in a subprocess, as a user does. `HYDRA_FULL_ERROR=1`
still shows the traceback.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning  # noqa: F401  (imported before a test swaps sys.stderr: its log handler keeps the stream it finds)
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from minigpt.model.folder import save_model_folder
from minigpt.tokenizer.char import CharTokenizer

ROOT = Path(__file__).resolve().parents[2]
# In-process runs of train.py / evaluate.py: no logging set up by Hydra in the test process.
QUIET_HYDRA = ["hydra/job_logging=none", "hydra/hydra_logging=none"]


@pytest.fixture
def model_folder(tiny_model, tmp_path: Path) -> Path:
    """A run folder holding a tiny dense model with its char tokenizer, and a (fake) last checkpoint."""
    tokenizer = CharTokenizer.train("ab: \n")
    save_model_folder(tmp_path / "run" / "model", tiny_model("gpt", vocab_size=tokenizer.vocab_size), tokenizer)
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    return tmp_path / "run"


@pytest.fixture
def damaged_folder(model_folder: Path) -> Path:
    """The model folder with its weights file cut short (as by a full disk or an interrupted copy)."""
    weights = model_folder / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])
    return model_folder


def write_lines(path: Path, *lines: str) -> Path:
    """A text file of `lines`."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def command_main(name: str) -> Callable[[], object]:
    """The `main` of an entry point: train.py / evaluate.py (run as scripts) or a `minigpt.cli` module."""
    if name in ("train", "evaluate"):
        return lambda: runpy.run_path(str(ROOT / f"{name}.py"), run_name="__main__")
    module = __import__(f"minigpt.cli.{name}", fromlist=["main"])
    return module.main


def run_in_process(name: str, args: list[str], monkeypatch, capsys) -> tuple[int | str | None, str]:
    """Run a command on `args` as its command line; (exit status, stdout + stderr)."""
    extra = QUIET_HYDRA if name in ("train", "evaluate") else []
    monkeypatch.setattr(sys, "argv", [name, *args, *extra])
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as stop:
            command_main(name)()
    finally:
        GlobalHydra.instance().clear()
    out = capsys.readouterr()
    return stop.value.code, out.out + out.err


def tiny_train(tmp_path: Path) -> list[str]:
    """A tiny, quiet one-step pretraining run on the toy play, writing under `tmp_path`."""
    from conftest import tiny_run_overrides

    return [*tiny_run_overrides(tmp_path), "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'out'}"]


def fine_tune(tmp_path: Path, stage: str, data: str, path: str, init_from: Path) -> list[str]:
    """A quiet one-step `stage` run from the model in `init_from` on the JSONL file `path`."""
    from conftest import QUIET_OVERRIDES

    return [
        *QUIET_OVERRIDES, "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'out'}",
        f"paths.cache_dir={tmp_path / 'cache'}", f"stage={stage}", f"data={data}", f"data.path={tmp_path / path}",
        f"init_from={init_from}",
    ]  # fmt: skip


# (command, arguments given the fixtures' paths, the sentence expected) — every one a user's mistake.
CASES: dict[str, tuple[str, Callable[[Path, Path], list[str]], str]] = {
    "train optim.lr": ("train", lambda t, m: [*tiny_train(t), "optim.lr=-1"], "optim.lr=-1 must be positive"),
    "train init_from": (
        "train", lambda t, m: [*tiny_train(t), f"init_from={t / 'nope'}"], "init_from={t}/nope is not a model folder"
    ),
    "train glob": (
        "train", lambda t, m: [*tiny_train(t), f"data.corpus.paths=[{t}/none/*.txt]"], "matches no file"
    ),
    "train damaged init_from": (
        "train", lambda t, m: fine_tune(t, "sft", "chat_jsonl", "chat.jsonl", m), "model.safetensors is damaged"
    ),
    "train chat wrong role": (
        "train", lambda t, m: fine_tune(t, "sft", "chat_jsonl", "role.jsonl", m),
        "role.jsonl line 2: message 0 has role 'robot'",
    ),
    "train chat malformed": (
        "train", lambda t, m: fine_tune(t, "sft", "chat_jsonl", "bad.jsonl", m),
        "bad.jsonl line 2: Expecting property name",
    ),
    "train chat empty": (
        "train", lambda t, m: fine_tune(t, "sft", "chat_jsonl", "empty.jsonl", m), "empty.jsonl holds no conversations"
    ),
    "train preferences": (
        "train", lambda t, m: fine_tune(t, "dpo", "preferences", "prefs.jsonl", m),
        'prefs.jsonl line 2: expected an object with "prompt"',
    ),
    "evaluate run": (
        "evaluate", lambda t, m: [f"run={t / 'nope'}", f"hydra.run.dir={t / 'out'}"], "{t}/nope is not a model folder"
    ),
    "generate max_new_tokens": (
        "generate", lambda t, m: [f"run={m}", "sampling.max_new_tokens=-5"], "sampling.max_new_tokens=-5 must be"
    ),
    "generate temperature": ("generate", lambda t, m: [f"run={m}", "sampling.temperature=0"], "sampling.temperature=0"),
    "generate top_p": ("generate", lambda t, m: [f"run={m}", "sampling.top_p=1.5"], "sampling.top_p=1.5 must be in"),
    "generate run": ("generate", lambda t, m: [f"run={t / 'nope'}"], "run={t}/nope is not a model folder"),
    "generate no run": ("generate", lambda t, m: [], "run is not set; give it on the command line, e.g. run=<value>"),
    "generate damaged": ("generate", lambda t, m: [f"run={m}"], "checkpoints/last.ckpt"),
    "chat max_new_tokens": ("chat", lambda t, m: [f"run={m}", "sampling.max_new_tokens=-5"], "max_new_tokens=-5"),
    "chat temperature": ("chat", lambda t, m: [f"run={m}", "sampling.temperature=0"], "sampling.temperature=0"),
    "chat top_p": ("chat", lambda t, m: [f"run={m}", "sampling.top_p=1.5"], "sampling.top_p=1.5"),
    "chat beam": ("chat", lambda t, m: [f"run={m}", "sampling.strategy=beam"], "cannot stream a chat answer"),
    "export_hf no out": ("export_hf", lambda t, m: [f"run={m}"], "out is not set"),
    "export_hf damaged": ("export_hf", lambda t, m: [f"run={m}", f"out={t / 'hf'}"], "model.safetensors is damaged"),
    "moe_prune dense": ("moe_prune", lambda t, m: [f"run={m}", "keep=2", f"out={t / 'p'}"], "holds a dense model"),
    "preference_pairs n": (
        "preference_pairs", lambda t, m: [f"run={m}", "n=0", f"out={t / 'p.jsonl'}"], "need n ≥ 1"
    ),
    "train_tokenizer glob": (
        "train_tokenizer", lambda t, m: ["data=text_files", f"data.corpus.paths=[{t}/none/*.txt]", f"out={t}/tok"],
        "matches no file",
    ),
}  # fmt: skip
DAMAGED = {"train damaged init_from", "generate damaged", "export_hf damaged"}


@pytest.fixture
def data_files(tmp_path: Path) -> Path:
    """Chat and preference JSONL files with a mistake each (and one good chat file)."""
    chat = json.dumps({"messages": [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "ba"}]})
    write_lines(tmp_path / "chat.jsonl", chat, chat)
    write_lines(tmp_path / "role.jsonl", chat, json.dumps({"messages": [{"role": "robot", "content": "ab"}]}))
    write_lines(tmp_path / "bad.jsonl", chat, "{not json")
    write_lines(tmp_path / "empty.jsonl")
    pair = json.dumps({"prompt": "ab", "chosen": "a", "rejected": "b"})
    write_lines(tmp_path / "prefs.jsonl", pair, json.dumps({"prompt": "ab", "chosen": "a"}))
    return tmp_path


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_mistake_prints_one_sentence_and_exits_2(
    case: str, request, data_files: Path, model_folder: Path, monkeypatch, capsys
) -> None:
    name, args, sentence = CASES[case]
    folder = request.getfixturevalue("damaged_folder") if case in DAMAGED else model_folder
    monkeypatch.chdir(data_files)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    status, output = run_in_process(name, args(data_files, folder), monkeypatch, capsys)
    assert status == 2, output
    assert sentence.format(t=data_files) in output
    assert output.count("error: ") == 1 and "Traceback" not in output


def run_subprocess(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`python *args` in `cwd` with this checkout importable; `env` adds environment variables."""
    inherited = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**inherited, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


ENTRY_POINTS = {
    "train.py": [str(ROOT / "train.py"), "optim.lr=-1"],
    "evaluate.py": [str(ROOT / "evaluate.py"), "run=nope"],
    "generate": ["-m", "minigpt.cli.generate", "run={m}", "sampling.top_p=1.5"],
    "chat": ["-m", "minigpt.cli.chat", "run={m}", "sampling.temperature=0"],
    "export_hf": ["-m", "minigpt.cli.export_hf", "run=nope", "out=hf"],
    "moe_prune": ["-m", "minigpt.cli.moe_prune", "run={m}", "keep=2", "out=pruned"],
    "preference_pairs": ["-m", "minigpt.cli.preference_pairs", "run={m}", "n=0", "out=p.jsonl"],
    "train_tokenizer": ["-m", "minigpt.cli.train_tokenizer", "data=text_files", "data.corpus.paths=[none/*]", "out=t"],
}


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_entry_point_run_as_a_user_would(entry: str, model_folder: Path, tmp_path: Path) -> None:
    args = [arg.format(m=model_folder) for arg in ENTRY_POINTS[entry]]
    done = run_subprocess(args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # one sentence, on one line


@pytest.mark.slow
def test_hydra_full_error_still_shows_the_traceback(tmp_path: Path) -> None:
    done = run_subprocess([str(ROOT / "train.py"), "optim.lr=-1"], cwd=tmp_path, HYDRA_FULL_ERROR="1")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ConfigError: optim.lr=-1 must be positive" in done.stderr


def test_hydra_reports_its_own_command_line_errors_without_a_traceback(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    # Hydra re-raises its errors under a debugger, and takes coverage's tracer (`pytest --cov`) for one.
    monkeypatch.setattr("hydra._internal.utils.is_under_debugger", lambda: False)
    status, output = run_in_process("train", ["optim.lrr=1"], monkeypatch, capsys)
    assert status == 1 and "Key 'lrr' is not in struct" in output and "Traceback" not in output
    # An unknown option of a group is refused before Hydra composes, with every option listed (nested ones too).
    status, output = run_in_process("train", ["model=nope"], monkeypatch, capsys)
    assert status == 2 and "model=nope is not an option of model/" in output and "gpt_nano" in output
    assert "Traceback" not in output


def test_enable_progress_bar_false_turns_the_bar_off(tmp_path: Path) -> None:
    from conftest import compose_config, tiny_run_overrides
    from lightning.pytorch.callbacks import RichProgressBar

    from minigpt.run import build_callbacks, train

    with_bar = [
        o for o in tiny_run_overrides(tmp_path) if not o.startswith(("callbacks.progress_bar", "trainer.enable_p"))
    ]
    shown = compose_config("train", [*with_bar, "trainer.max_steps=1"], tmp_path / "run")
    assert any(isinstance(callback, RichProgressBar) for callback in build_callbacks(shown))
    hidden = compose_config(
        "train", [*with_bar, "trainer.max_steps=1", "trainer.enable_progress_bar=false"], tmp_path / "run"
    )
    assert not any(isinstance(callback, RichProgressBar) for callback in build_callbacks(hidden))
    train(hidden)  # Lightning refused this before: "found `RichProgressBar` in callbacks list"
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_lightnings_refusal_prints_its_sentence(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    status, output = run_in_process("train", [*tiny_train(tmp_path), "trainer.accelerator=gpu"], monkeypatch, capsys)
    assert status == 2 and "error: No supported gpu backend found" in output and "Traceback" not in output


def test_a_data_error_names_file_and_line_and_survives_pickling() -> None:
    import pickle

    from minigpt.utils.errors import ConfigError, DataError

    err = DataError("chats.jsonl", "message 0 has no role.", line=3)
    assert str(err) == "chats.jsonl line 3: message 0 has no role." and isinstance(err, ConfigError)
    assert str(DataError("model.safetensors", "is damaged.")) == "model.safetensors is damaged."
    copy = pickle.loads(pickle.dumps(err))  # exceptions cross process boundaries (DDP ranks, workers)
    assert str(copy) == str(err) and copy.line == 3
