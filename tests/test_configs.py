"""Every option of every config group, and every command config, composes, resolves and builds.

The options are found by listing `conf/`: a new file in any group (or a new command config) is tested
without editing this file. Each option is composed into `train.yaml` with Hydra's compose API; every
interpolation must resolve, and every `_target_` anywhere must import and take the keys its node gives
it. Then what the option changes is built, as far as it can be without training: the data module, the
tokenizer, `ModelConfig` → `Transformer` (at its real size, one forward pass), the optimizer and its
schedule, the strategy and the trainer with its precision, callbacks and loggers (writing into a temporary
folder), a task; a stage node's `_target_` must be a `Stage`. The default config (the `train` command) is
built whole. So a broken config file fails here rather than in a user's run.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import CONF_DIR, make_play
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from minigpt.inference.config import GenerationConfig
from minigpt.model.config import ModelConfig
from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.run import build_callbacks, build_datamodule, build_loggers, build_model_config
from minigpt.scale.strategy import build_strategy
from minigpt.stages.base import Stage
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError

CONF = Path(CONF_DIR)
GROUPS = sorted(d.name for d in CONF.iterdir() if d.is_dir())
COMMANDS = sorted(p.stem for p in CONF.glob("*.yaml"))
TEXT = make_play(40)


def options(group: str) -> list[str]:
    """The options of a config group: its YAML files, nested folders included (`data=tasks/mix`)."""
    return sorted(str(p.relative_to(CONF / group).with_suffix("")) for p in (CONF / group).rglob("*.yaml"))


def train_defaults() -> dict[str, Any]:
    """The group choices of train.yaml's defaults list (`{"model": "gpt_nano", …}`)."""
    entries = OmegaConf.to_container(OmegaConf.load(CONF / "train.yaml").defaults)
    assert isinstance(entries, list)
    return {key: value for entry in entries if isinstance(entry, dict) for key, value in entry.items()}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module's runs, caches and files, so that composed configs compare equal."""
    return tmp_path_factory.mktemp("configs")


def compose_full(config_name: str, overrides: list[str], workdir: Path) -> DictConfig:
    """Hydra's composition of `conf/<config_name>.yaml`, its `hydra` node kept and registered as a job's."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):  # what a launched job knows and a composed config does not: its number and folder
        cfg.hydra.job.num = 0
        cfg.hydra.runtime.output_dir = str(workdir / "run")
    HydraConfig().set_config(cfg)
    return cfg


def job_config(cfg: DictConfig) -> DictConfig:
    """The config a job sees: without the `hydra` node."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def target_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping with a `_target_` in a resolved container, with its dotted path."""
    if isinstance(node, dict):
        if node.get("_target_"):
            yield path, node
        for key, value in node.items():
            yield from target_nodes(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from target_nodes(value, f"{path}[{i}]")


def check_targets(cfg: DictConfig, only: list[str] | None = None) -> None:
    """Resolve every interpolation, import every `_target_`, and check it takes the keys its node gives.

    `only`: the nodes a command reads, when it reads part of a shared group's node.
    """
    nodes = {key: OmegaConf.select(cfg, key) for key in only} if only else {"": cfg}
    resolved = {
        key: OmegaConf.to_container(node, resolve=True, throw_on_missing=False) if OmegaConf.is_config(node) else node
        for key, node in nodes.items()
    }
    for path, node in target_nodes(resolved):
        target = get_object(node["_target_"])
        try:
            parameters = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):  # a builtin without a signature: importing it is all we can check
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            continue
        accepted = {p.name for p in parameters}
        unknown = sorted(k for k in node if not k.startswith("_") and k not in accepted)
        assert not unknown, f"{path}: {node['_target_']} takes no argument(s) {unknown}"


def path_overrides(workdir: Path) -> list[str]:
    """Keep everything a composed train config writes or caches inside `workdir`."""
    run = workdir / "run"
    return [
        f"paths.output_dir={run}",
        f"paths.runs_dir={workdir / 'runs'}",
        f"paths.cache_dir={workdir / 'cache'}",
        f"trainer.default_root_dir={run}",
    ]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> str:
    """Write `records` one per line; returns the path as a string."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def data_file(kind: str, workdir: Path) -> str:
    """A small file of the kind a data module reads from `data.path`."""
    if kind == "PreferenceDataModule":
        pair = {"prompt": "say a", "chosen": "aaa", "rejected": "bbb"}
        return write_jsonl(workdir / "prefs.jsonl", [pair] * 40)
    if kind == "PromptDataModule":
        return write_jsonl(workdir / "prompts.jsonl", [{"prompt": f"count to {i}"} for i in range(40)])
    if kind == "ChatDataModule":
        chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
        return write_jsonl(workdir / "chat.jsonl", [chat] * 40)
    if kind == "VisionChatDataModule":  # data=vision/jsonl: image conversations, images as .npy files
        import numpy as np

        np.save(workdir / "image.npy", np.zeros((24, 24), dtype=np.float32))
        chat = [{"role": "user", "content": "<image> colour?"}, {"role": "assistant", "content": "black"}]
        return write_jsonl(workdir / "images.jsonl", [{"images": ["image.npy"], "messages": chat}] * 10)
    if kind == "SpeechDataModule":  # data=speech/wav_folder: a folder of WAV files with transcripts
        from minigpt.audio.wav import write_wav

        (workdir / "clips").mkdir(exist_ok=True)
        write_wav(workdir / "clips" / "a.wav", [0.0] * 1600, 16_000)
        (workdir / "clips" / "a.txt").write_text("hello", encoding="utf-8")
        return str(workdir / "clips")
    raise AssertionError(f"tests/test_configs.py does not know which file {kind} reads; add it to data_file.")


def fill_required(cfg: DictConfig, workdir: Path) -> None:
    """Set what a user must give (`???`, or a data file where a data node has no tasks), as a user would."""
    job = job_config(cfg)
    values: dict[str, Any] = {}
    for key in OmegaConf.missing_keys(job):
        if key == "data.corpus.paths":
            (workdir / "play.txt").write_text(TEXT, encoding="utf-8")
            values[key] = [str(workdir / "play.txt")]
        elif key == "data.path":
            values[key] = data_file(job.data._target_.rsplit(".", 1)[-1], workdir)
        else:
            raise AssertionError(f"{key} is required (???); teach tests/test_configs.py a value for it.")
    data = job.get("data")
    if data is not None and "tasks" in data and not data.tasks and data.get("path", "???") is None:
        values["data.path"] = data_file(data._target_.rsplit(".", 1)[-1], workdir)
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False)


def compose_train(overrides: list[str], workdir: Path) -> DictConfig:
    """conf/train.yaml with `overrides`, writing into `workdir`, required values filled in."""
    cfg = compose_full("train", [*overrides, *path_overrides(workdir)], workdir)
    fill_required(cfg, workdir)
    return cfg


def on_this_machine(cfg: DictConfig) -> bool:
    """Whether the trainer's accelerator exists here (trainer=gpu needs CUDA)."""
    return str(cfg.trainer.get("accelerator", "cpu")) in ("cpu", "auto") or torch.cuda.is_available()


def build_model(job: DictConfig, tokenizer: Any) -> Transformer:
    """`ModelConfig` → `Transformer` at the config's size; one forward pass gives logits of the right shape."""
    model_config = build_model_config(job, tokenizer)
    model = Transformer(model_config)
    logits, _ = model(torch.zeros(1, 8, dtype=torch.long))
    assert logits.shape == (1, 8, model_config.vocab_size)
    return model


def build_optimizer(job: DictConfig, model: torch.nn.Module) -> None:
    """The optimizer and schedule partials on `model`'s parameter groups; one step."""
    muon = (
        job.optim.get("muon_lr") is not None
    )  # optim=muon: the hidden matrices in their own group (Stage.param_groups)
    optimizer = instantiate(job.optim.optimizer)(model.param_groups(job.optim.weight_decay, muon=muon))
    scheduler = instantiate(job.optim.scheduler)(optimizer)
    optimizer.step()
    scheduler.step()
    assert all(group["lr"] >= 0 for group in optimizer.param_groups)


def build_trainer(job: DictConfig) -> Any:
    """Strategy, callbacks, loggers and the trainer (None where the strategy or accelerator is not here)."""
    callbacks, loggers = build_callbacks(job), build_loggers(job)
    assert len(loggers) == len([node for node in (job.get("logger") or {}).values() if node])
    try:
        strategy = build_strategy(job)
    except ConfigError as err:  # DeepSpeed refuses a CPU, by design, before any work
        assert "DeepSpeed" in job.strategy._target_, err
        return None
    if not on_this_machine(job):
        return None
    return instantiate(job.trainer, strategy=strategy, callbacks=callbacks, logger=loggers or False)


def build(job: DictConfig, nodes: set[str]) -> Any:
    """Build the named top-level nodes of a train config (and what they need); returns the trainer, if built."""
    if "data" in nodes:
        build_datamodule(job)
    tokenizer = instantiate(job.tokenizer, texts=lambda: [TEXT]) if nodes & {"tokenizer", "model", "optim"} else None
    if tokenizer is not None:
        assert tokenizer.decode(tokenizer.encode("ANNA:\nthe river")) == "ANNA:\nthe river"
    if nodes & {"model", "optim"}:
        build_optimizer(job, build_model(job, tokenizer))
    if "stage" in nodes:
        assert issubclass(get_class(job.stage._target_), Stage)
    if "sampling" in nodes:
        GenerationConfig(**OmegaConf.to_container(job.sampling, resolve=True))
    if "task" in nodes:
        task = instantiate(job.task)
        example = task.examples("train", 1)[0]
        assert example.prompt and 0.0 <= task.score(example.prompt, example.answer) <= 1.0
    if nodes & {"trainer", "strategy", "callbacks", "logger", "paths", "seed"}:
        return build_trainer(job)
    return None


@pytest.fixture(scope="module")
def default_job(workdir: Path) -> dict[str, Any]:
    """The default train config, resolved: what an option is compared with to see what it changes."""
    resolved = OmegaConf.to_container(job_config(compose_train([], workdir)), resolve=True)
    assert isinstance(resolved, dict)
    return resolved


GROUP_OPTIONS = [(group, option) for group in GROUPS for option in options(group)]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes_resolves_and_builds(
    group: str, option: str, workdir: Path, default_job: dict[str, Any]
) -> None:
    # Groups that train.yaml does not list (task) are added with `+group=option`.
    override = f"{group}={option}" if group in train_defaults() else f"+{group}={option}"
    cfg = compose_train([override], workdir)
    assert cfg.hydra.runtime.choices[group] == option
    check_targets(cfg)
    job = job_config(cfg)
    resolved = OmegaConf.to_container(job, resolve=True)
    assert isinstance(resolved, dict)
    changed = {key for key in resolved if resolved[key] != default_job.get(key)}
    build(job, changed)


def model_folder(workdir: Path) -> Path:
    """A tiny model folder (weights, config, char tokenizer), what `run=` points the commands at."""
    tokenizer = CharTokenizer.train(TEXT)
    config = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=tokenizer.vocab_size)
    return save_model_folder(workdir / "model", Transformer(config), tokenizer)


def build_generate(cfg: DictConfig) -> None:
    """generate.yaml and chat.yaml: their `sampling` node makes a valid `GenerationConfig`."""
    from minigpt.cli.sampling import generation_config

    config = generation_config(cfg.sampling, CharTokenizer.train(TEXT))
    assert config.max_new_tokens == cfg.sampling.max_new_tokens


def build_evaluate(cfg: DictConfig) -> None:
    """evaluate.yaml: the decoding options of its samples."""
    GenerationConfig(**OmegaConf.to_container(cfg.sampling), num_return_sequences=max(cfg.num_samples, 1))


def build_train_tokenizer(cfg: DictConfig) -> None:
    """train_tokenizer.yaml: the corpus and the tokenizer it learns (on a small text here)."""
    instantiate(cfg.data.corpus)
    tokenizer = instantiate(cfg.tokenizer, texts=lambda: [TEXT])
    assert tokenizer.decode(tokenizer.encode("the river")) == "the river"


def build_train(cfg: DictConfig) -> None:
    """train.yaml: every object of the default run."""
    assert build(cfg, set(cfg.keys())) is not None


def build_nothing(cfg: DictConfig) -> None:
    """export_hf.yaml, export_gguf.yaml, moe_prune.yaml: paths and counts (tested in tests/export, tests/cli)."""


def build_serve(cfg: DictConfig) -> None:
    """serve.yaml: its address and limits make valid `ServeSettings`."""
    from minigpt.serve.settings import ServeSettings

    ServeSettings.from_config(cfg)


def build_preference_pairs(cfg: DictConfig) -> None:
    """preference_pairs.yaml: the task whose prompts are sampled and whose gold scorer labels the pairs."""
    task = instantiate(cfg.task)
    example = task.examples("train", 1)[0]
    assert task.score(example.prompt, example.answer) == 1.0


def build_plan(cfg: DictConfig) -> None:
    """plan.yaml: a memory plan for every strategy, from its model config."""
    from minigpt.scale.plan import main as plan

    assert plan(cfg)


def build_constitution_node(cfg: DictConfig) -> None:
    """red_team.yaml, ai_feedback.yaml: the constitution their judges and planted secret come from."""
    from minigpt.alignment.constitution import Constitution

    assert isinstance(instantiate(cfg.constitution), Constitution)


COMMAND_BUILDS: dict[str, Callable[[DictConfig], None]] = {
    "train": build_train,
    "evaluate": build_evaluate,
    "generate": build_generate,
    "serve": build_serve,
    "chat": build_generate,
    "export_hf": build_nothing,
    "export_gguf": build_nothing,
    "train_tokenizer": build_train_tokenizer,
    "moe_prune": build_nothing,
    "quantize": build_nothing,
    "prune": build_nothing,
    "preference_pairs": build_preference_pairs,
    "red_team": build_constitution_node,
    "ai_feedback": build_constitution_node,
    "scrub": build_nothing,
    "plan": build_plan,
    "run_sandboxed": build_nothing,  # tests/code/test_run_sandboxed.py runs it
    "speak": build_nothing,  # tests/stages/test_tts_stage.py runs it on a trained TTS run
    "transcribe": build_nothing,  # tests/speech/test_speech_stage.py runs it
}
# train_tokenizer reads only its data node's corpus; the rest of that node (seq_len: ${model.block_size})
# belongs to training and does not resolve without a model.
COMMAND_READS = {"train_tokenizer": ["data.corpus", "tokenizer", "paths", "out"]}
COMMAND_REQUIRED: dict[str, Callable[[Path], str]] = {
    "run": lambda workdir: str(model_folder(workdir)),
    "out": lambda workdir: str(workdir / "out"),
    "keep": lambda workdir: "2",
    "n": lambda workdir: "4",
    "method": lambda workdir: "int8_weight_only",  # composed only: the command checks the name
    "sparsity": lambda workdir: "0.5",
    "file": lambda workdir: __file__,  # composed only: any Python file
    "red_team": lambda workdir: str(workdir / "red"),
    "input": lambda workdir: str(workdir / "in.txt"),
    "text": lambda workdir: "4 7 1",
    "audio": lambda workdir: str(workdir / "clip.wav"),  # composed only: the command reads it
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_config_composes_resolves_and_builds(command: str, workdir: Path) -> None:
    assert command in COMMAND_BUILDS, f"conf/{command}.yaml is new: say in COMMAND_BUILDS what it builds."
    raw = OmegaConf.load(CONF / f"{command}.yaml")
    overrides = [f"{key}={COMMAND_REQUIRED[key](workdir)}" for key in raw if OmegaConf.is_missing(raw, key)]
    if command == "train":
        overrides += path_overrides(workdir)
    elif (CONF / "paths").is_dir() and "paths" in str(raw.get("defaults", "")):
        overrides.append(f"paths.cache_dir={workdir / 'cache'}")
    cfg = compose_full(command, overrides, workdir)
    scope = COMMAND_READS.get(command)
    check_targets(cfg, scope)
    nodes = [OmegaConf.select(cfg, key) for key in scope] if scope else [job_config(cfg)]
    assert not [
        OmegaConf.missing_keys(node) for node in nodes if OmegaConf.is_config(node) and OmegaConf.missing_keys(node)
    ]
    COMMAND_BUILDS[command](job_config(cfg))


def leaf_keys(node: Any, path: str = "") -> Iterator[str]:
    """Dotted paths of the values a raw YAML file sets."""
    if isinstance(node, DictConfig) and (len(node) > 0 or not path):
        for key in node:
            yield from leaf_keys(node._get_node(key), f"{path}.{key}" if path else str(key))
    else:
        yield path


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_files_state_only_what_they_change(name: str, workdir: Path) -> None:
    """Every group an experiment picks and every value it sets differ from what the config had without it."""
    raw = OmegaConf.load(CONF / "experiment" / f"{name}.yaml") or OmegaConf.create()
    entries = [e for e in raw.get("defaults", []) if not isinstance(e, str)]  # a plain name: the file it extends
    picks = {str(k).split("/")[-1]: v for entry in entries for k, v in entry.items()}
    defaults = train_defaults()
    for group, option in picks.items():
        assert defaults.get(group) != option, f"experiment={name} picks {group}={option}, the default already"
    without = compose_full("train", [*path_overrides(workdir), *(f"{g}={o}" for g, o in picks.items())], workdir)
    with_it = compose_full("train", [*path_overrides(workdir), f"experiment={name}"], workdir)
    for key in leaf_keys(OmegaConf.masked_copy(raw, [k for k in raw if k != "defaults"])):
        before, after = OmegaConf.select(without, key), OmegaConf.select(with_it, key)
        assert before != after, f"experiment={name} sets {key}={after}, the value it had anyway"


@pytest.mark.slow  # peft imports transformers (seconds)
@pytest.mark.parametrize("model", options("model"))
def test_some_lora_option_fits_every_model(model: str, workdir: Path) -> None:
    """Each lora option applies (r=2) or names the modules the model lacks; at least one applies."""
    from minigpt.model.lora import apply_lora, lora_config

    fitting = []
    for option in options("lora"):
        job = job_config(compose_train([f"model={model}", f"lora={option}", "lora.r=2"], workdir))
        net = Transformer(build_model_config(job, CharTokenizer.train(TEXT)))
        lora = job.lora
        try:
            apply_lora(net, lora_config(lora.r, lora.alpha, lora.dropout, list(lora.target_modules), lora.bias))
        except ConfigError as err:
            assert "lora.target_modules" in str(err)
            continue
        trainable = [name for name, p in net.named_parameters() if p.requires_grad]
        assert trainable and all("lora_" in name for name in trainable)
        fitting.append(option)
    assert fitting, f"no lora option fits model={model}; add one to conf/lora/"


@pytest.mark.parametrize("stage", options("stage"))
def test_lora_is_refused_where_the_stage_does_not_take_it(stage: str, workdir: Path) -> None:
    """`lora.r>0` with a stage whose node has no `lora: ${lora}` would train every weight unnoticed."""
    from minigpt.run import validate_config

    job = job_config(compose_train([f"stage={stage}", "lora.r=8"], workdir))
    if "lora" in job.stage:
        validate_config(job)
    else:
        with pytest.raises(ConfigError, match="lora.r=8"):
            validate_config(job)
