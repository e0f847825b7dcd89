"""ReST's Improve filter: reward ≥ τ, at most K replies per prompt (the best), rising thresholds, a clear
error when nothing is kept; the Grow file round-trips and reads as SFT chat data."""

import pytest

from minigpt.data.chat_files import read_chat_jsonl
from minigpt.rl.grow_file import read_grow_file, write_grow_file
from minigpt.rl.rest_filter import ScoredReply, check_thresholds, keep_replies, require_kept
from minigpt.utils.errors import ConfigError, DataError

# Three prompts × four replies, prompt-major as a rollout lays them out; the reply names its reward.
SCORED = [
    ScoredReply(prompt, f"{prompt}{i}", reward, "toy", reward)
    for prompt, rewards in (("p", [1.0, 0.0, 1.0, 1.0]), ("q", [0.2, 0.6, 0.9, 0.7]), ("r", [0.0, 0.1, 0.0, 0.4]))
    for i, reward in enumerate(rewards)
]


def replies(kept: list[ScoredReply]) -> list[str]:
    return [r.reply for r in kept]


def test_threshold_keeps_exactly_the_replies_at_or_above_it():
    assert replies(keep_replies(SCORED, 0.7, None)) == ["p0", "p2", "p3", "q2", "q3"]
    assert replies(keep_replies(SCORED, 0.4, None)) == ["p0", "p2", "p3", "q1", "q2", "q3", "r3"]
    assert keep_replies(SCORED, 1.5, None) == []


def test_per_prompt_cap_keeps_the_best_k_of_each_prompt_in_sampling_order():
    # p: three correct replies, ties → the first two sampled; q: 0.9 and 0.7 beat 0.6 and keep their order.
    assert replies(keep_replies(SCORED, 0.5, 2)) == ["p0", "p2", "q2", "q3"]
    assert replies(keep_replies(SCORED, 0.0, 1)) == ["p0", "q2", "r3"]


def test_thresholds_must_rise():
    assert check_thresholds([0.5, 0.7, 0.9]) == [0.5, 0.7, 0.9]
    for bad in ([0.5, 0.5], [0.9, 0.7], []):
        with pytest.raises(ConfigError, match="stage.thresholds"):
            check_thresholds(bad)


def test_a_grow_step_that_keeps_nothing_names_the_threshold_and_the_best_score():
    with pytest.raises(ConfigError, match=r"Grow step 2 kept no reply.*τ=1\.5 \(the best scored 1\)"):
        require_kept(keep_replies(SCORED, 1.5, None), SCORED, 1.5, 2)
    require_kept(SCORED[:1], SCORED, 1.0, 1)  # something kept: no error


def test_grow_file_round_trips_and_is_sft_chat_data(tmp_path):
    path = tmp_path / "grow.jsonl"
    write_grow_file(path, SCORED)
    assert read_grow_file(path) == SCORED
    conversations = [conv for _, conv in read_chat_jsonl(path)]
    assert conversations[0] == [{"role": "user", "content": "p"}, {"role": "assistant", "content": "p0"}]
    path.write_text('{"prompt": "p", "completion": "x"}\n')
    with pytest.raises(DataError, match="line 1"):
        read_grow_file(path)
