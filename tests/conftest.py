"""Shared fixtures: thread limits, a small text written for the tests, and Hydra-composed configs."""

from __future__ import annotations

import os
import subprocess
import sys

# The machine is shared and has 2 cores: extra threads slow everything down. Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from minigpt.evaluation.logs import find_metrics_csv, read_metrics  # noqa: E402

torch.set_num_threads(1)

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# Written for these tests: a little play whose lines repeat with variations, so that a tiny model can
# learn its structure within a few dozen steps.
_SPEAKERS = ["ANNA", "BORIS", "CLARA", "DMITRI"]
_LINES = [
    "the river runs cold under the old stone bridge",
    "bring the lamp, the night is long and the road is dark",
    "i have counted every coin and every coin is gone",
    "sing again the song of the green hills and the grey sea",
    "we shall meet at the mill when the bells ring twice",
]


def make_play(n_lines: int = 400) -> str:
    """A deterministic toy play: SPEAKER:\\nline\\n\\n repeated."""
    out = []
    for i in range(n_lines):
        speaker = _SPEAKERS[i % len(_SPEAKERS)]
        line = _LINES[(i * 3 + i // 7) % len(_LINES)]
        out.append(f"{speaker}:\n{line}.\n")
    return "\n".join(out)


@pytest.fixture
def play_file(tmp_path: Path) -> Path:
    """The toy play written to a text file."""
    path = tmp_path / "play.txt"
    path.write_text(make_play(), encoding="utf-8")
    return path


# A quiet, short run: no progress bars, summaries or samples.
QUIET_OVERRIDES = [
    "trainer.max_steps=20",
    "trainer.val_check_interval=10",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "callbacks.samples.num_samples=0",
    "final_samples=0",
]


def tiny_run_overrides(tmp_path: Path) -> list[str]:
    """Overrides for a tiny, quick run on the toy play (written into `tmp_path`), caches under `tmp_path`.

    Shared by the composed configs below and by tests that run `train.py` in a subprocess.
    """
    if not (tmp_path / "play.txt").exists():
        (tmp_path / "play.txt").write_text(make_play(), encoding="utf-8")
    return [
        "data=text_files",
        f"data.corpus.paths=[{tmp_path / 'play.txt'}]",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        "model.block_size=32",
        "trainer.limit_val_batches=2",
        *QUIET_OVERRIDES,
    ]


@pytest.fixture
def tiny_overrides(tmp_path: Path) -> list[str]:
    """`tiny_run_overrides` for this test's `tmp_path` (for `train.py` run as a subprocess)."""
    return tiny_run_overrides(tmp_path)


def compose_config(config_name: str, overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Compose `conf/<config_name>.yaml` as Hydra would for a run writing into `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        if output_dir is not None:
            cfg.paths.output_dir = cfg.trainer.default_root_dir = str(output_dir)
        del cfg["hydra"]  # as in a real run, the job sees its config without the hydra node
    return cfg


@pytest.fixture
def compose_train(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose `conf/train.yaml` with overrides for a quiet short run writing into `tmp_path/run`.

    By default the data is the toy play (`data=text_files`) and the model tiny; stages that bring their
    own data and model (`init_from=` + `data=tasks/...`, `data=preferences`) pass `toy_data=False`.
    Any override wins.
    """

    def _compose(*overrides: str, toy_data: bool = True) -> DictConfig:
        base = tiny_run_overrides(tmp_path) if toy_data else QUIET_OVERRIDES
        return compose_config("train", [*base, *overrides], tmp_path / "run")

    return _compose


@pytest.fixture
def compose_eval() -> Callable[..., DictConfig]:
    """Compose `conf/evaluate.yaml` with overrides."""
    return lambda *overrides: compose_config("evaluate", list(overrides))


@pytest.fixture
def compose_command() -> Callable[..., DictConfig]:
    """Compose a command's `conf/<name>.yaml` (generate, chat, export_hf, …) with overrides: `(name, *overrides)`."""
    return lambda name, *overrides: compose_config(name, list(overrides))


# The Llama family's switches (as in conf/model/llama_nano.yaml); the GPT-2 family is ModelConfig's default.
LLAMA_STYLE = dict(norm="rmsnorm", activation="swiglu", positions="rope", bias=False, tie_embeddings=False, n_kv_head=2)


@pytest.fixture
def tiny_model() -> Callable[..., torch.nn.Module]:
    """Build a seeded tiny `Transformer` (2 layers, 4 heads, 32 wide) of family "gpt" or "llama" (GQA)."""
    from minigpt.model import ModelConfig, Transformer

    def _build(family: str = "gpt", seed: int = 0, **overrides: object) -> Transformer:
        torch.manual_seed(seed)
        fields: dict = dict(n_layer=2, n_head=4, n_embd=32, block_size=64, vocab_size=64)
        if family == "llama":
            fields.update(LLAMA_STYLE)
        return Transformer(ModelConfig(**{**fields, **overrides})).eval()

    return _build


# --- running train.py as a subprocess: the way to test DDP/FSDP launches (an in-process `ddp` would
# re-run pytest), kills and resumes ---

TRAIN_PY = Path(__file__).resolve().parents[1] / "train.py"


@pytest.fixture
def run_train(tiny_overrides: list[str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """`run_train(*overrides, env=None, check=True)`: a tiny `train.py` run from `tmp_path`, runs under
    `tmp_path/runs`; fails the test with the run's output if it fails (unless `check=False`)."""

    def _run(*overrides: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
        flags = [arg for arg in overrides if arg.startswith("-")]  # Hydra wants -m before the overrides
        overrides = tuple(arg for arg in overrides if not arg.startswith("-"))
        command = [sys.executable, str(TRAIN_PY), *flags, *tiny_overrides, f"paths.runs_dir={tmp_path / 'runs'}"]
        command += overrides
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", **(env or {})}
        proc = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
        if check and proc.returncode != 0:
            pytest.fail(f"train.py failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    return _run


def step_losses(run_dir: Path, key: str = "train/loss") -> dict[int, float]:
    """{step: value} of one metric from a run's CSV log."""
    path = find_metrics_csv(run_dir)
    assert path is not None, f"no metrics.csv under {run_dir}"
    return dict(read_metrics(path)[key])


@pytest.fixture
def losses() -> Callable[..., dict[int, float]]:
    """`losses(run_dir, key="train/loss")` → {step: value} from the run's CSV log."""
    return step_losses
