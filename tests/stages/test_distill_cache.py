"""`stage.teacher_cache=true`: a run that reads the teacher's cached distributions trains exactly as one that
runs the teacher (k = V) or close to it (small k); the second run reads the cache without loading the
teacher; another teacher makes a new cache; a cache that cannot serve the run is refused in one sentence."""

import pytest
import torch
from distill_fixtures import OPTIM, distil, model_folder

import minigpt.stages.distill
import minigpt.stages.distill_cache
from minigpt.model.folder import load_model_folder
from minigpt.stages.distill import DistillStage
from minigpt.stages.inputs import StageInputs
from minigpt.utils.errors import ConfigError

# T = 2 and α = ½: the cache serves the loss at T and `val/kl` at T = 1, and the hard term still applies.
LOSS = {"loss": "fkl", "temperature": 2.0, "alpha": 0.5}


def vocab_size(tmp_path) -> int:
    return load_model_folder(model_folder(tmp_path / "probe", seed=0))[0].config.vocab_size


@pytest.mark.parametrize("pack", [False, True])
def test_with_the_whole_distribution_the_cached_run_is_the_teacher_run(tmp_path, pack):
    steps = 6
    plain, plain_losses = distil(tmp_path, steps, pack=pack, **LOSS)
    cache = {"teacher_cache": True, "teacher_top_k": vocab_size(tmp_path), "cache_dir": str(tmp_path)}
    cached, cached_losses = distil(tmp_path, steps, pack=pack, **cache, **LOSS)
    assert cached.teacher is None and cached.cache is not None and cached.cache.built
    assert len(cached_losses) == steps
    torch.testing.assert_close(torch.tensor(cached_losses), torch.tensor(plain_losses), atol=1e-5, rtol=1e-5)
    for name in ("val/loss", "val/kl", "val/ce"):
        metrics = cached.trainer.callback_metrics, plain.trainer.callback_metrics
        assert float(metrics[0][name]) == pytest.approx(float(metrics[1][name]), abs=1e-5), name


def test_a_small_k_is_close_the_second_run_reads_the_cache_and_a_new_teacher_rebuilds_it(tmp_path, monkeypatch):
    steps, k = 6, 4
    _, plain_losses = distil(tmp_path, steps, **LOSS)
    first, losses = distil(tmp_path, steps, teacher_cache=True, teacher_top_k=k, cache_dir=str(tmp_path), **LOSS)
    assert first.cache is not None and first.cache.built and first.cache.path.exists()
    # The loss's divergence term is a lower bound of the full one (4 of ~20 tokens kept, the rest merged):
    # the cached losses are at most the full ones, and within 10% of them on this peaked random teacher.
    plain, cached = torch.tensor(plain_losses), torch.tensor(losses)
    assert (cached <= plain + 1e-5).all() and ((plain - cached) / plain).max() < 0.1, (plain, cached)

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher's weights were loaded")

    monkeypatch.setattr(minigpt.stages.distill_cache, "load_model_folder", no_teacher)
    second, again = distil(tmp_path, steps, teacher_cache=True, teacher_top_k=k, cache_dir=str(tmp_path), **LOSS)
    assert second.cache is not None and not second.cache.built and second.cache.path == first.cache.path
    assert again == losses
    monkeypatch.undo()

    third, _ = distil(tmp_path, 1, teacher_seed=2, teacher_cache=True, teacher_top_k=k, cache_dir=str(tmp_path), **LOSS)
    assert third.cache is not None and third.cache.built and third.cache.path != first.cache.path
    assert len(list((tmp_path / "teacher_logits").glob("*.safetensors"))) == 2


def test_a_cached_run_never_loads_the_teacher_in_the_stage(tmp_path, monkeypatch):
    student, teacher = model_folder(tmp_path / "student", seed=0), model_folder(tmp_path / "teacher", seed=1)
    _, tokenizer = load_model_folder(student)
    real = minigpt.stages.distill.load_model_folder
    loaded = []
    monkeypatch.setattr(
        minigpt.stages.distill, "load_model_folder", lambda p, *a, **k: loaded.append(p) or real(p, *a, **k)
    )
    DistillStage(model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=str(student), teacher=str(teacher),
                 teacher_cache=True)  # fmt: skip
    assert loaded == []  # only the teacher's config and tokenizer are read, to check them


@pytest.mark.parametrize(
    ("option", "match"),
    [({"teacher_cache": True, "on_policy_fraction": 0.5}, "stage.teacher_cache=true cannot serve"),
     ({"teacher_top_k": 0}, "stage.teacher_top_k=0"), ({"teacher_top_k": 2.5}, "stage.teacher_top_k=2.5")],
)  # fmt: skip
def test_bad_cache_options_are_refused(tmp_path, option, match):
    student, teacher = model_folder(tmp_path / "student", seed=0), model_folder(tmp_path / "teacher", seed=1)
    _, tokenizer = load_model_folder(student)
    with pytest.raises(ConfigError, match=match):
        DistillStage(model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=str(student),
                     teacher=str(teacher), **option)  # fmt: skip


def test_a_cache_without_chat_rows_is_refused(tmp_path):
    student, teacher = model_folder(tmp_path / "student", seed=0), model_folder(tmp_path / "teacher", seed=1)
    _, tokenizer = load_model_folder(student)
    stage = DistillStage(model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=str(student),
                         teacher=str(teacher), teacher_cache=True)  # fmt: skip
    with pytest.raises(ConfigError, match="caches the teacher on chat data, not PromptDataModule"):
        stage.attach_data(StageInputs(source="PromptDataModule"))
