"""Upstream models for a stage that needs them and was given none: build, cache, hand over.

`python train.py stage=ppo` needs an SFT policy (`init_from`), a reward model (`stage.reward_model`) and
prompts (`data`). When they are left empty, `with_upstream(cfg)` builds them with the run's own `model`
and tokenizer from the recipes of `conf/upstream/default.yaml` (pretrain → SFT → preference pairs →
reward model), each through the same `train(cfg)` task as any run, composed with Hydra's compose API,
then returns the run's config with those slots filled in. Each product is cached under
`upstream.cache_dir/<name>-<key>/`, keyed by its composed config (`minigpt.pipeline.keys`) and written
atomically (`minigpt.pipeline.cache`): a second run reuses it, a changed config rebuilds it, a killed
build is never read.

What a stage needs is one line of `upstream.needs` (`ppo: {init_from: sft, reward_model: reward, data:
prompts}`); a recipe states its own needs the same way, so one `fill` serves the run and its upstream.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from minigpt.cli.command import CONF_DIR
from minigpt.model.folder import resolve_model_folder
from minigpt.pipeline.cache import build_once
from minigpt.pipeline.keys import config_key, folder_digest, options_key
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text

# Model slots of `upstream.needs` and the config key each fills.
MODEL_SLOTS = {"init_from": "init_from", "reward_model": "stage.reward_model"}


@dataclass
class Product:
    """An upstream product: a model folder or a pairs file, built into a cache entry or given by the user."""

    name: str
    path: Path  # what a consumer's config points at
    entry: Path | None = None  # the cache folder it is built into; None when the user gave it
    build: Callable[[Path], None] | None = None  # writes the product into a (temporary) entry folder
    needs: list[Product] = field(default_factory=list)
    summary: str = ""  # how it is built, for the console


def stage_name(cfg: DictConfig) -> str:
    """The stage's name from its class path: `minigpt.stages.ppo.PPOStage` → `ppo` (the key of `upstream.needs`)."""
    parts = str(cfg.stage.get("_target_") or "").split(".")
    return parts[-2] if len(parts) >= 2 else ""


def compose_train(overrides: list[str]) -> DictConfig:
    """Compose `train.yaml` with `overrides`: inside a Hydra app through its own search path, else from conf/."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=overrides)
    return copy.deepcopy(_compose_from_conf(tuple(overrides)))


@functools.lru_cache(maxsize=64)
def _compose_from_conf(overrides: tuple[str, ...]) -> DictConfig:
    """`train.yaml` composed from conf/, remembered: composing takes ~0.1 s and plans repeat the same recipes."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def command_line_overrides() -> list[str]:
    """The overrides this Hydra run was started with (none outside a Hydra run)."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def data_target(cfg: DictConfig) -> str:
    """The `_target_` of a config's data node (its kind of data)."""
    return str(cfg.data.get("_target_") or "")


def with_upstream(cfg: DictConfig) -> DictConfig:
    """`cfg` with every upstream slot its stage left empty filled by a cached (or newly built) product.

    Returns `cfg` itself when nothing is missing, or when `upstream.enabled=false`.
    """
    options = cfg.get("upstream")
    if not options or not options.get("enabled", True):
        return cfg
    needs = options.needs.get(stage_name(cfg))
    if not needs:
        return cfg
    return Upstream(cfg).complete()


class Upstream:
    """Plans and builds the products one run needs; a product used twice (SFT) is planned once."""

    def __init__(self, run: DictConfig) -> None:
        self.run = run
        self.options = run.upstream
        self.cache_dir = Path(str(self.options.cache_dir)).expanduser().resolve()
        self.task = self._choose_task()
        self.products: dict[str, Product] = {}
        self.done: set[str] = set()  # products built or found in this run (SFT feeds both pairs and reward)
        self.aliases: dict[str, str] = {str(self.cache_dir): "<upstream>"}
        self.needs: DictConfig = self.options.needs.get(stage_name(run)) or OmegaConf.create({})
        self.used: list[Product] = []
        self.console = Console()

    # ---------------------------------------------------------------- the run
    def plan(self) -> DictConfig:
        """The run's config with its empty slots pointing at planned products (nothing is built yet)."""
        cfg = copy.deepcopy(self.run)
        for slot, path in self._model_slots(cfg, self.needs).items():
            if OmegaConf.select(cfg, path):  # given: what is built from it starts from the user's model
                self._bind(self.needs[slot], OmegaConf.select(cfg, path))
        self.used = self.fill(cfg, self.needs)
        return cfg

    def complete(self) -> DictConfig:
        """The run's config with its empty slots filled, after building (or finding) what they point at."""
        stage, run = stage_name(self.run), self.run
        slots = self._model_slots(run, self.needs)
        missing = {path: self.needs[slot] for slot, path in slots.items() if not OmegaConf.select(run, path)}
        action = self._data_action(run, self.needs.get("data"))
        if not missing and action is None:
            return run
        cfg = self.plan()
        if missing:
            self._say(
                f"stage={stage} was given no {', no '.join(missing)}: it takes the {' and '.join(missing.values())} "
                f"models from the upstream cache {self.cache_dir}, built there when missing with this run's model "
                f"and tokenizer from the recipes of conf/upstream/default.yaml (task {self.task}). To use your own, "
                "pass " + " ".join(f"{path}=<model folder>" for path in missing) + "."
            )
        if action == "replace":
            self._say(
                f"stage={stage} trains on {self.needs.data} data, not on this run's pretraining corpus: it uses "
                f"data={self._data_config(self.needs.data)} (task {self.task}: upstream.task, else by stage.reward). "
                "Pass data=… to choose."
            )
        elif action == "path":
            self._say(
                f"stage={stage} was given no data.path: it uses the "
                f"{self.options.data_kinds[self.needs.data].path} built below"
            )
        for product in self.used:
            self._build(product)
        filled = {path: OmegaConf.select(cfg, path) for path in (*MODEL_SLOTS.values(), "data.path")}
        self._say("ready: " + " ".join(f"{k}={v}" for k, v in filled.items() if isinstance(v, str) and v))
        return cfg

    # ---------------------------------------------------------------- filling slots
    def fill(self, cfg: DictConfig, needs: DictConfig) -> list[Product]:
        """Fill `cfg`'s empty slots named by `needs` with products (planned, not built); returns those used."""
        used = []
        with open_dict(cfg):
            for slot, path in self._model_slots(cfg, needs).items():
                if not OmegaConf.select(cfg, path):
                    product = self.product(needs[slot])
                    OmegaConf.update(cfg, path, str(product.path), merge=False)
                    used.append(product)
            kind = needs.get("data")
            action = self._data_action(cfg, kind)
            if action == "replace":
                cfg.data = self._replacement_data(kind)
                action = self._data_action(cfg, kind)
            if action == "path":
                product = self.product(self.options.data_kinds[kind].path)
                cfg.data.path = str(product.path)
                used.append(product)
        return used

    def _replacement_data(self, kind: str) -> DictConfig:
        """The data node of `kind` for the task, with the command line's `data.*` overrides that apply to it.

        `python train.py stage=ppo data.batch_size=8` means the PPO prompts' batch size; an override the new
        data lacks (`data.corpus.paths`) stays with the pretraining corpus, which feeds the pretrain step.
        """
        overrides = [f"data={self._data_config(kind)}"]
        node = compose_train(overrides).data
        absent = object()
        for override in command_line_overrides():
            override = override.lstrip("+")  # `+data.x=…` (added to the corpus) sets an existing key here
            key = override.split("=", 1)[0]
            if key.startswith("data.") and OmegaConf.select(node, key[len("data.") :], default=absent) is not absent:
                overrides.append(override)
        return compose_train(overrides).data

    def _data_action(self, cfg: DictConfig, kind: str | None) -> str | None:
        """`replace` the data (the pretraining corpus, where another kind is needed), fill its `path`, or None.

        Only the pretraining corpus (`upstream.replaceable`, train.yaml's default) is replaced: other data of
        the wrong kind was chosen by the user, and the stage refuses it with the data to use instead.
        """
        if kind is None:
            return None
        spec = self.options.data_kinds[kind]
        if data_target(cfg) not in spec.targets:
            replaceable = data_target(cfg) in self.options.data_kinds[self.options.replaceable].targets
            return "replace" if replaceable else None
        if spec.get("path") and (OmegaConf.is_missing(cfg.data, "path") or not cfg.data.get("path")):
            return "path"
        return None

    def _model_slots(self, cfg: DictConfig, needs: DictConfig) -> dict[str, str]:
        """The model slots `needs` names that apply to this config: {slot: config key}.

        `reward_model` applies only to a stage that has it and scores with it (`stage.reward=model`).
        """
        slots = {}
        for slot, path in MODEL_SLOTS.items():
            if slot not in needs:
                continue
            if slot == "reward_model" and ("reward_model" not in cfg.stage or cfg.stage.get("reward") != "model"):
                continue
            slots[slot] = path
        return slots

    def _bind(self, name: str, given: str) -> None:
        """Use the user's model folder as product `name`; what is built from it is keyed by its files."""
        folder = resolve_model_folder(given).resolve()
        self.aliases[str(folder)] = f"<given:{folder_digest(folder)}>"
        self.products[name] = Product(name, folder, summary="given")

    def _choose_task(self) -> str:
        """`upstream.task`, else the first known task of the run's data, else by `stage.reward`, else default."""
        if self.options.get("task"):
            return str(self.options.task)
        for name in self.run.data.get("tasks") or {}:
            if name in self.options.tasks:
                return str(name)
        reward = self.run.stage.get("reward")
        return str((reward and self.options.task_by_reward.get(str(reward))) or self.options.default_task)

    def _data_config(self, kind: str) -> str:
        """The data config (a name under conf/data/) of `kind` for the chosen task."""
        choice = (self.options.tasks.get(self.task) or {}).get(kind) or self.options.data_kinds[kind].get("config")
        if not choice:
            raise ConfigError(
                f"upstream.tasks.{self.task}.{kind} is not set, so there is no {kind} data for task {self.task}; "
                f"add it to conf/upstream/default.yaml, set upstream.task to one of {list(self.options.tasks)}, "
                "or pass data=…"
            )
        return str(choice)

    # ---------------------------------------------------------------- products
    def product(self, name: str) -> Product:
        """Plan product `name` (and what it needs) once: a training run, or pairs sampled from a model."""
        if name not in self.products:
            recipes = self.options.recipes
            if name not in recipes:
                raise ConfigError(f"upstream.recipes has no {name!r}; known recipes are {list(recipes)}.")
            plan = self._pairs_product if "sample_from" in recipes[name] else self._train_product
            self.products[name] = plan(name, recipes[name])
        return self.products[name]

    def _train_product(self, name: str, recipe: DictConfig) -> Product:
        """A `train(cfg)` run of the recipe's overrides, with the run's inherited settings and its own needs."""
        needs = recipe.get("needs") or OmegaConf.create({})
        kind = needs.get("data")
        data = [f"data={self._data_config(kind)}"] if kind else []
        cfg = compose_train([*data, *recipe.overrides, *self.options.overrides])
        with open_dict(cfg):
            for key in self.options.inherit:
                value = OmegaConf.select(self.run, key)
                if value is not None:
                    OmegaConf.update(cfg, key, value, merge=False)
            own_data = bool(kind) and data_target(self.run) in self.options.data_kinds[kind].targets
            if own_data:
                cfg.data = self.run.data  # the run's own data feeds the step that can use it (its text → pretrain)
            cfg.upstream.enabled = False  # its needs are filled here; it builds nothing itself
            self._scale_steps(cfg)
        used = self.fill(cfg, needs)
        entry = self.cache_dir / f"{name}-{config_key(cfg, self.options.key_ignores, self.aliases)}"
        source = "this run's data" if own_data else (data or ["data of the recipe"])[0]
        summary = f"stage={stage_name(cfg)}, {source}, {cfg.trainer.max_steps} steps"
        return Product(name, entry / "model", entry, functools.partial(run_training, cfg, entry), used, summary)

    def _pairs_product(self, name: str, recipe: DictConfig) -> Product:
        """Preference pairs sampled from the recipe's `sample_from` model and labelled by the task's scorer."""
        source = self.product(recipe.sample_from)
        options = {key: recipe[key] for key in ("n", "k", "temperature", "max_new_tokens", "with_answer", "seed")}
        options["n"] = max(1, round(options["n"] * self.options.steps_scale))
        options["task"] = self.task
        key = options_key({"recipe": name, "sample_from": str(source.path), **options}, self.aliases)
        entry = self.cache_dir / f"{name}-{key}"
        summary = f"{options['n']} prompts × {options['k']} samples of task {self.task} from {source.name}"
        return Product(
            name, entry / "pairs.jsonl", entry, functools.partial(write_pairs, source.path, options), [source], summary
        )

    def _scale_steps(self, cfg: DictConfig) -> None:
        """Short-step mode: scale the recipe's steps, warm-up and validation interval; cap them at max_steps."""
        scale, cap = float(self.options.steps_scale), self.options.get("max_steps")
        steps = max(1, round(cfg.trainer.max_steps * scale))
        steps = min(steps, cap) if cap else steps
        cfg.trainer.max_steps = steps
        cfg.optim.warmup_steps = min(round(cfg.optim.warmup_steps * scale), steps - 1)
        interval = cfg.trainer.get("val_check_interval")
        if isinstance(interval, int):
            cfg.trainer.val_check_interval = min(max(1, round(interval * scale)), steps)

    def _build(self, product: Product) -> None:
        """Build `product` after what it needs, unless its cache entry exists (or the user gave it)."""
        if product.name in self.done:
            return
        self.done.add(product.name)
        for need in product.needs:
            self._build(need)
        if product.entry is None or product.build is None:
            return
        if product.entry.is_dir():
            self._say(f"{product.name}: reusing {product.entry}")
            return
        self._say(f"{product.name}: building ({product.summary}) into {product.entry}")
        build_once(product.entry, product.build)
        self._say(f"{product.name}: built {product.path}")

    def _say(self, text: str) -> None:
        """One console line, prefixed so that the upstream steps stand out from the runs' own output."""
        self.console.print(f"[bold]upstream[/bold] {text}", highlight=False, soft_wrap=True)


def run_training(cfg: DictConfig, entry: Path, folder: Path) -> None:
    """Train the composed `cfg` into `folder` (the temporary cache entry that becomes `entry`)."""
    from minigpt.run import train  # here, not at the top: run.py calls with_upstream

    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.trainer.default_root_dir = str(folder)
    saved = copy.deepcopy(cfg)
    saved.paths.output_dir = str(entry)  # the config as `evaluate.py run=<entry>` will find it
    (folder / ".hydra").mkdir()
    atomic_write_text(folder / ".hydra" / "config.yaml", OmegaConf.to_yaml(saved))
    train(cfg)


def write_pairs(source: Path, options: dict[str, Any], folder: Path) -> None:
    """Sample and label preference pairs from the model in `source` into `folder/pairs.jsonl`."""
    from minigpt.data.preference_pairs import make_pairs  # here: sampling pulls in inference code
    from minigpt.tasks.base import get_task

    settings = {key: value for key, value in options.items() if key not in ("n", "task")}
    pairs = make_pairs(str(source), get_task(options["task"]), options["n"], **settings)
    if not pairs:
        raise ConfigError(
            f"the {options['k']} samples of {source} tied on all {options['n']} prompts of task {options['task']}, "
            "so there are no preference pairs; raise upstream.recipes.pairs.k "
            "or set upstream.recipes.pairs.with_answer=true"
        )
    atomic_write_text(folder / "pairs.jsonl", "".join(json.dumps(pair) + "\n" for pair in pairs))
