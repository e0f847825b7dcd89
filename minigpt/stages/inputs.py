"""What a stage takes from its data besides the batches, handed over by the task wrapper before `fit`.

A stage never reaches into its datamodule through the trainer, nor changes it. The task wrapper
(`minigpt.run.train`, or a test) calls `prepare_fit(stage, datamodule)` after building both and before
`trainer.fit`:

1. `fit_context`: the data is fitted to the model's context — a chat or preference datamodule's
   `seq_len: null` becomes the model's `block_size`, a longer `seq_len` is refused;
2. `stage_inputs`: the datamodule's tasks, evaluation sizes, prompt lengths and extra loaders are
   gathered into a `StageInputs`;
3. `stage.attach_data(inputs)`: the stage keeps what it needs and refuses data its model cannot use
   (e.g. PPO: prompts whose reply would not fit the context), so a bad pairing fails before training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from minigpt.audio.features import MelConfig
from minigpt.data.chat import ChatDataModule
from minigpt.data.preferences import PreferenceDataModule
from minigpt.data.prompts import PromptDataModule
from minigpt.data.speech.tts import TTSDataModule
from minigpt.data.text import TextDataModule
from minigpt.tasks.base import Task
from minigpt.utils.errors import ConfigError

if TYPE_CHECKING:
    from minigpt.stages.base import Stage


@dataclass
class StageInputs:
    """The data's side of a stage, besides its batches. A field is empty when the data has no such thing.

    Attributes:
        source: the datamodule's class name (for error messages that name the data to use instead).
        tasks: {name: Task} the data comes from: gold scorers for task scores, task rewards, gold metrics.
        num_eval: validation prompts per task for task scoring at each validation.
        longest_prompt: (tokens, text) of the longest rendered prompt — prompt data only (RL stages).
        demonstrations: endless SFT batches of the tasks' answers (PPO-ptx) — prompt data from tasks.
        val_batches: the validation batches (a stage that measures its starting point on them).
        pair_batches: `split` → the preference pairs of that split in order (DPO's precomputed reference).
        row_batches: `split` → the chat batches of that split in order, each with its rows' `index` in the
            split — chat data only (distillation's cached teacher).
        val_bytes_per_token: UTF-8 bytes per validation token, for bits per byte — raw-text data only.
        mel_frames: the log-mel front end of the reference frames — text-to-speech data only.
    """

    source: str = ""
    tasks: dict[str, Task] = field(default_factory=dict)
    num_eval: int = 0
    longest_prompt: tuple[int, str] | None = None
    demonstrations: Callable[[], Iterator[dict[str, Any]]] | None = None
    val_batches: Callable[[], Iterable[Any]] | None = None
    pair_batches: Callable[[str], Iterable[dict[str, Any]]] | None = None
    row_batches: Callable[[str], Iterable[dict[str, Any]]] | None = None
    val_bytes_per_token: Callable[[], float] | None = None
    mel_frames: MelConfig | None = None


def stage_inputs(datamodule: Any) -> StageInputs:
    """Gather what any stage may need from `datamodule` (its tokenizer already attached)."""
    prompts = isinstance(datamodule, PromptDataModule)
    text = isinstance(datamodule, TextDataModule)
    return StageInputs(
        source=type(datamodule).__name__,
        tasks=dict(getattr(datamodule, "tasks", None) or {}),
        num_eval=int(getattr(datamodule, "num_eval", 0) or 0),
        longest_prompt=datamodule.longest_prompt() if prompts else None,
        demonstrations=partial(datamodule.demonstrations, datamodule.batch_size) if prompts else None,
        val_batches=getattr(datamodule, "val_dataloader", None),
        pair_batches=datamodule.dataloader if isinstance(datamodule, PreferenceDataModule) else None,
        row_batches=datamodule.dataloader if isinstance(datamodule, ChatDataModule) else None,
        val_bytes_per_token=partial(getattr, datamodule, "val_bytes_per_token") if text else None,
        mel_frames=datamodule.mel_config() if isinstance(datamodule, TTSDataModule) else None,
    )  # bound methods and partials, not lambdas: `strategy=ddp_spawn` pickles the stage with its inputs


def fit_context(datamodule: Any, block_size: int) -> None:
    """Fit the data's `seq_len` to the model's context: null → `block_size`; longer → a `ConfigError`."""
    if not hasattr(datamodule, "seq_len"):
        return
    if datamodule.seq_len is None:
        datamodule.seq_len = block_size
    elif datamodule.seq_len > block_size:
        raise ConfigError(
            f"data.seq_len={datamodule.seq_len} exceeds the model's context block_size={block_size}; "
            f"set data.seq_len={block_size} or leave it null."
        )


def prepare_fit(stage: Stage, datamodule: Any) -> None:
    """Fit the data to the stage's model, hand the stage its inputs, and let it refuse bad data — before fit."""
    fit_context(datamodule, stage.model.config.block_size)
    stage.attach_data(stage_inputs(datamodule))


def require_prompts(inputs: StageInputs, stage: str, max_new_tokens: int, block_size: int) -> None:
    """Refuse, before training, data without prompts (an RL stage samples its own replies) and prompts whose
    longest reply would not fit the model's context."""
    if inputs.longest_prompt is None:
        raise ConfigError(
            f"stage={stage} samples its own replies and needs prompts, not {inputs.source} batches: "
            "use data=prompts/<task> (e.g. data=prompts/arithmetic) or data=prompts data.path=<prompts.jsonl>."
        )
    longest, text = inputs.longest_prompt
    # One slot more than prompt + reply: a reward model scores an unfinished reply with `<|end|>` appended.
    if longest + max_new_tokens + 1 > block_size:
        raise ConfigError(
            f"The prompt {text[:40]!r} takes {longest} tokens; with stage.max_new_tokens={max_new_tokens} and a "
            f"closing <|end|> that exceeds the model's context block_size={block_size}. "
            f"Set stage.max_new_tokens≤{block_size - longest - 1}."
        )
