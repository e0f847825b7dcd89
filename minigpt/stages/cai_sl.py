"""`stage=cai_sl`: supervised Constitutional AI — sample, critique, revise, fine-tune on the revisions.

Bai et al. 2022, "Constitutional AI: Harmlessness from AI Feedback" (2212.08073) §3: a helpful model
answers red-team prompts; each answer is critiqued against a principle of the constitution and revised,
repeatedly; the model is then fine-tuned on (prompt, final revision) together with helpful data, so that
it becomes harmless without losing its helpfulness. Here (`minigpt.alignment`):

1. **Sample.** Before the first optimiser step the model answers `revise_prompts` red-team training
   prompts (`minigpt.alignment.red_team`; `red_team=<folder or file>`, or generated on the fly), one
   reply each, through the shared rollout path (`minigpt.rl.rollout`).
2. **Critique → revise** (`minigpt.alignment.revision`): up to `rounds` rounds; each takes the worst
   principle's judge, fills its critique template and revises by the principle's method — by default
   the best of `num_candidates` fresh samples under the judges.
3. **Fine-tune.** Every step is written to `cai_sl/steps.jsonl` and the final revisions to
   `cai_sl/revisions.jsonl` (chat JSONL: reusable as `data=chat_jsonl data.path=...`). Each training step
   then minimises  (1 − λ)·NLL(helpful batch) + λ·NLL(revision batch),  λ = `revision_weight`: the
   helpful batch comes from the run's chat data (`data=tasks/mix`), the loss on both is SFT's
   (`lm_steps.chat_nll`, assistant tokens only). The mixing keeps the tasks' gold from eroding.

Validation logs SFT's loss and task scores, and `val/violation`: the mean constitution score of greedy
replies to `eval_red_team` held-out red-team prompts (the folder's `val.jsonl` if it has one, else its
test-template prompts). A resumed run reuses the
revisions file instead of sampling again.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric

from minigpt.alignment.constitution import Constitution
from minigpt.alignment.red_team import RedTeamPrompt, make_red_team, planted_secret, read_red_team
from minigpt.alignment.revision import critique_and_revise
from minigpt.data.chat import encode_conversation
from minigpt.data.chat_files import read_chat_jsonl
from minigpt.data.packing import collate_padded
from minigpt.evaluation.tasks import complete
from minigpt.losses.lm import IGNORE_INDEX
from minigpt.rl.rollout import sample_rollouts
from minigpt.rl.settings import RolloutSettings
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel
from minigpt.stages.inputs import StageInputs
from minigpt.stages.lm_steps import chat_nll
from minigpt.stages.task_scoring import log_greedy_task_scores
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text
from minigpt.utils.modes import eval_mode


class CaiSLStage(Stage):
    """SL-CAI (see the module docstring).

    Args (besides `Stage`'s):
        constitution: the principles (`conf/constitution/*.yaml`, built by Hydra).
        red_team: a red-team folder (its `train.jsonl` is revised, `test.jsonl` validated on) or file;
            null generates `red_team_n` prompts with the constitution's secret.
        revise_prompts: red-team training prompts answered, critiqued and revised.
        rounds, num_candidates: N critique–revision rounds at most; K samples of a `best_of_k` revision.
        revision_weight: λ, the revisions' share of each step's loss (the rest is the helpful data's).
        revision_batch_size: revisions per step.
        max_new_tokens, temperature, top_k, top_p: how replies and revision candidates are sampled.
        lora, eval_tasks: as for `stage=sft`.
        eval_red_team: held-out red-team prompts answered greedily at each validation (0 = off).
        seed: seeds the sampling of replies and revision candidates.
    """

    def __init__(
        self,
        *args: Any,
        constitution: Constitution,
        red_team: str | None = None,
        red_team_n: int = 1000,
        revise_prompts: int = 512,
        rounds: int = 2,
        num_candidates: int = 8,
        revision_weight: float = 0.5,
        revision_batch_size: int = 32,
        max_new_tokens: int = 24,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        lora: Mapping[str, Any] | None = None,
        eval_tasks: bool = True,
        eval_red_team: int = 64,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(constitution, Constitution):
            raise ConfigError("stage.constitution must be a constitution; use constitution=default.")
        for name, value in (("revise_prompts", revise_prompts), ("rounds", rounds), ("num_candidates", num_candidates),
                            ("revision_batch_size", revision_batch_size)):  # fmt: skip
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"stage.{name}={value!r} must be an integer ≥ 1.")
        if not 0.0 < revision_weight <= 1.0:
            raise ConfigError(f"stage.revision_weight={revision_weight} must be in (0, 1], e.g. 0.5.")
        self.constitution, self.red_team, self.red_team_n = constitution, red_team, red_team_n
        self.revise_prompts, self.rounds, self.num_candidates = revise_prompts, rounds, num_candidates
        self.revision_weight, self.revision_batch_size = revision_weight, revision_batch_size
        self.sampling = RolloutSettings(max_new_tokens, temperature, top_k, top_p)
        self.chat = ChatModel.prepare(self.model, self.tokenizer, lora, "cai_sl")
        self.eval_tasks, self.eval_red_team = eval_tasks, eval_red_team
        self.val_loss = MeanMetric()
        self.revisions: Iterator[dict[str, Tensor]] | None = None
        self.seed = seed
        self.generator: torch.Generator | None = None

    # --- data -------------------------------------------------------------------------------------------

    def attach_data(self, inputs: StageInputs) -> None:
        """Refuse data that is not chat conversations (the helpful half of the loss)."""
        super().attach_data(inputs)
        if inputs.source in ("PromptDataModule", "PreferenceDataModule") or inputs.val_bytes_per_token is not None:
            raise ConfigError(
                f"stage=cai_sl mixes its revisions with helpful chat data, not {inputs.source} batches: "
                "use data=tasks/mix (or data=chat_jsonl data.path=<conversations.jsonl>)."
            )

    def red_team_prompts(self, split: str) -> list[RedTeamPrompt]:
        """The red prompts of `split`: from `red_team`, or generated with the constitution's secret."""
        if self.red_team:
            prompts = read_red_team(self.red_team, split)
        else:
            secret = planted_secret(self.constitution)
            prompts = make_red_team(self.red_team_n, secret, [])[split]
        return [p for p in prompts if p.kind == "red"]

    @property
    def held_out_split(self) -> str:
        """What `val/violation` answers: the red-team folder's `val` split if it has one (choices are made on
        it, so the test split is measured once), else `test`."""
        folder = Path(self.red_team).expanduser() if self.red_team else None
        return "val" if folder is not None and (folder / "val.jsonl").is_file() else "test"

    @property
    def out_dir(self) -> Path:
        """`cai_sl/` in the run folder: the steps and revisions files."""
        return Path(self.trainer.default_root_dir) / "cai_sl"

    # --- sample, critique, revise ----------------------------------------------------------------------

    def sample(self, prompts: Sequence[str], k: int) -> list[list[str]]:
        """`k` replies to each prompt, prompt-major, from the current model (the loop's `Sampler`)."""
        assert self.tokenizer is not None
        if self.generator is None or self.generator.device != self.device:
            # One stream for the whole loop: round 2's candidates must differ from round 1's.
            self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        with eval_mode(self.model):
            rollouts = sample_rollouts(
                self.model, self.tokenizer, prompts, self.sampling.generation(), k, self.generator
            )
            replies = [reply for rollout in rollouts for reply in rollout.completions]
        return [replies[i * k : (i + 1) * k] for i in range(len(prompts))]

    def revise(self) -> list[dict[str, Any]]:
        """Answer, critique and revise the red-team prompts; write both files; the revisions as chat records."""
        prompts = [p.prompt for p in self.red_team_prompts("train")[: self.revise_prompts]]
        first = [replies[0] for replies in self.sample(prompts, 1)]
        final, steps = critique_and_revise(
            self.constitution, prompts, first, self.sample, self.rounds, self.num_candidates
        )
        records: list[dict[str, Any]] = [
            {"messages": [{"role": "user", "content": x}, {"role": "assistant", "content": y}], "initial": y0,
             "violation_before": self.constitution.total(x, y0), "violation_after": self.constitution.total(x, y)}
            for x, y0, y in zip(prompts, first, final)
        ]  # fmt: skip
        atomic_write_text(self.out_dir / "steps.jsonl", "".join(json.dumps(asdict(s)) + "\n" for s in steps))
        atomic_write_text(self.out_dir / "revisions.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        n = len(records)
        self.log_dict({
            "cai/violation_initial": sum(r["violation_before"] for r in records) / n,
            "cai/violation_revised": sum(r["violation_after"] for r in records) / n,
            "cai/revised": float(sum(r["initial"] != r["messages"][1]["content"] for r in records)) / n,
            "cai/steps": float(len(steps)),
        })  # fmt: skip
        return records

    def on_train_start(self) -> None:
        """Revise before the first step (a resumed run reads its revisions back); batch them endlessly."""
        assert self.tokenizer is not None
        path = self.out_dir / "revisions.jsonl"
        if path.exists():  # written atomically: complete
            conversations = [messages for _, messages in read_chat_jsonl(path)]
        else:
            conversations = [record["messages"] for record in self.revise()]
        examples: list[Any] = [encode_conversation(self.tokenizer, messages) for messages in conversations]
        pad = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        collate = partial(collate_padded, pad_id=pad)
        generator = torch.Generator().manual_seed(0)
        loader: DataLoader[Any] = DataLoader(
            examples,  # type: ignore[arg-type]  # a list is a map-style dataset
            batch_size=self.revision_batch_size,
            shuffle=True,
            generator=generator,
            collate_fn=collate,
        )
        self.revisions = itertools.chain.from_iterable(itertools.repeat(loader))

    # --- fine-tune --------------------------------------------------------------------------------------

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Full fine-tuning: the model's groups; LoRA: adapters (decayed) and new token rows (not)."""
        return self.chat.param_groups(self.model, weight_decay)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """(1 − λ)·NLL(helpful batch) + λ·NLL(revision batch)."""
        assert self.revisions is not None
        revision_batch = {k: v.to(self.device) for k, v in next(self.revisions).items()}
        helpful, aux = chat_nll(self.model, batch)
        revised, revision_aux = chat_nll(self.model, revision_batch)
        loss = (1 - self.revision_weight) * helpful + self.revision_weight * revised
        self.log_dict(
            {"train/loss": loss, "train/helpful_loss": helpful, "train/revision_loss": revised}, prog_bar=True
        )
        return loss + self.aux_loss(aux) + self.aux_loss(revision_aux)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate the helpful data's masked loss, weighted by assistant tokens."""
        loss, _ = chat_nll(self.model, batch)
        self.val_loss.update(loss, weight=(batch["targets"] != IGNORE_INDEX).sum())

    def on_validation_epoch_end(self) -> None:
        """Log the validation loss, the task scores and the held-out red-team violation."""
        self.log("val/loss", self.val_loss.compute(), prog_bar=True, sync_dist=True)
        self.val_loss.reset()
        log_greedy_task_scores(self, self.eval_tasks)
        if self.eval_red_team and not self.trainer.sanity_checking:
            assert self.tokenizer is not None
            prompts = [p.prompt for p in self.red_team_prompts(self.held_out_split)[: self.eval_red_team]]
            with eval_mode(self.model):
                replies = complete(self.model, self.tokenizer, prompts, self.sampling.max_new_tokens)
            scores = [self.constitution.total(x, y) for x, y in zip(prompts, replies)]
            self.log("val/violation", sum(scores) / len(scores), prog_bar=True)

    def save_model_folder(self, folder: str | Path) -> Path:
        """The model folder; with LoRA, the merged model there and the adapter alone in `../adapter`."""
        return self.chat.save(folder, self.model, self.tokenizer)
