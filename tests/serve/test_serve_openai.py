"""The official `openai` client against the server: the same greedy text as `minigpt.cli.generate` and
`ChatSession`, streaming or not; seeds, `n`, `stop`, usage, models and metrics."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from openai import OpenAI
from serve_fixtures import chat_model_folder, running_server

from minigpt.cli.generate import generate_text
from minigpt.inference.chat import ChatSession
from minigpt.inference.config import GenerationConfig
from minigpt.model.folder import load_model_and_tokenizer

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+3="}]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chat_model_folder(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def url(folder: Path) -> Iterator[str]:
    with running_server(folder, max_batch=4) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0)


def session_reply(folder: Path, config: GenerationConfig, generator: torch.Generator | None = None) -> str:
    """What the terminal chat answers to MESSAGES."""
    model, tokenizer = load_model_and_tokenizer(folder)
    session = ChatSession(model, tokenizer, config, system=MESSAGES[0]["content"])
    return session.reply(MESSAGES[1]["content"], generator=generator)


def test_chat_greedy_text_is_the_chat_sessions(client: OpenAI, folder: Path) -> None:
    expected = session_reply(folder, GenerationConfig(max_new_tokens=30, strategy="greedy"))
    assert len(expected) > 5  # the random model says something, so a misplaced token would show
    reply = client.chat.completions.create(model="minigpt", messages=MESSAGES, temperature=0, max_tokens=30)
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].finish_reason in ("stop", "length")
    chunks = list(
        client.chat.completions.create(model="minigpt", messages=MESSAGES, temperature=0, max_tokens=30, stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
    # Streamed in pieces, not at once: one piece per decoding step, or fewer when a loaded machine lets steps
    # finish before the client reads (the pending text then goes out as one piece).
    assert len([c for c in chunks if c.choices[0].delta.content]) > 1


def test_completion_greedy_text_is_the_generate_commands(client: OpenAI, folder: Path, compose_command) -> None:
    prompt = "the lazy"
    cfg = compose_command(
        "generate",
        f"run={folder}",
        f"prompt={prompt}",
        "sampling.strategy=greedy",
        "sampling.max_new_tokens=25",
        "stream=false",
    )
    _, tokenizer = load_model_and_tokenizer(folder)
    expected = tokenizer.decode(generate_text(cfg).token_lists()[0], skip_special=True)
    reply = client.completions.create(model="minigpt", prompt=prompt, temperature=0, max_tokens=25)
    assert reply.choices[0].text == expected
    assert reply.usage.prompt_tokens == len(tokenizer.encode(prompt)) and reply.usage.completion_tokens <= 25
    stream = client.completions.create(
        model="minigpt",
        prompt=prompt,
        temperature=0,
        max_tokens=25,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens  # the usage chunk comes last


def batched_steps(url: str) -> float:
    """Engine steps so far that ran more than one row (from the step batch-size histogram of /metrics)."""
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    value = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("minigpt_step")}
    return value["minigpt_step_batch_size_count"] - value['minigpt_step_batch_size_bucket{le="1.0"}']


def test_concurrent_requests_get_the_text_each_gets_alone(client: OpenAI, url: str) -> None:
    prompts = ["the lazy", "quick brown", "0123", "fox jumps over"]

    def complete(prompt: str) -> str:
        reply = client.completions.create(model="minigpt", prompt=prompt, temperature=0, max_tokens=40)
        return reply.choices[0].text

    alone = [complete(prompt) for prompt in prompts]
    before = batched_steps(url)
    with ThreadPoolExecutor(len(prompts)) as pool:  # they join the batch together and at different steps
        together = list(pool.map(complete, prompts * 2))
    assert together == alone * 2 and len(set(alone)) == len(prompts)
    assert batched_steps(url) > before  # they were decoded in one batch, not one after the other


def test_seeded_choices_repeat_and_match_a_seeded_session(client: OpenAI, folder: Path) -> None:
    ask = dict(model="minigpt", messages=MESSAGES, temperature=0.9, max_tokens=20, n=2, seed=3)
    first, again = client.chat.completions.create(**ask), client.chat.completions.create(**ask)
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in again.choices] and texts[0] != texts[1]
    streamed = ["", ""]
    for chunk in client.chat.completions.create(**ask, stream=True):
        streamed[chunk.choices[0].index] += chunk.choices[0].delta.content or ""
    assert streamed == texts  # the choices' chunks interleave, each in order
    config = GenerationConfig(max_new_tokens=20, strategy="sample", temperature=0.9)
    assert texts[0] == session_reply(folder, config, torch.Generator().manual_seed(3))  # choice i: seed + i


def test_top_p_is_the_nucleus_filter(client: OpenAI) -> None:
    greedy = client.completions.create(model="minigpt", prompt="the", temperature=0, max_tokens=20).choices[0].text
    ask = dict(model="minigpt", prompt="the", temperature=1.5, max_tokens=20, seed=1)
    assert client.completions.create(**ask, top_p=0.001).choices[0].text == greedy  # the top token alone
    assert client.completions.create(**ask).choices[0].text != greedy  # while sampling the whole softmax differs


def test_stop_string_cuts_the_text_before_it(client: OpenAI) -> None:
    full = client.completions.create(model="minigpt", prompt="the", temperature=0, max_tokens=25).choices[0].text
    stop = full[6:8]
    for stream in (False, True):
        reply = client.completions.create(
            model="minigpt", prompt="the", temperature=0, max_tokens=25, stop=[stop], stream=stream
        )
        choices = [c.choices[0] for c in reply] if stream else reply.choices
        assert "".join(c.text for c in choices) == full[: full.find(stop)]
        assert choices[-1].finish_reason == "stop"


def test_models_health_and_metrics(client: OpenAI, url: str) -> None:
    assert [m.id for m in client.models.list()] == ["minigpt"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    client.completions.create(model="minigpt", prompt="a", temperature=0, max_tokens=3)
    metrics = httpx.get(f"{url}/metrics").text
    names = ["minigpt_tokens_per_second", "minigpt_queue_length", "minigpt_batch_size", "minigpt_step_batch_size_count"]
    for name in ["minigpt_generated_tokens_total", "minigpt_time_to_first_token_seconds_count", *names]:
        assert name in metrics
    assert 'minigpt_request_latency_seconds_count{endpoint="/v1/completions"}' in metrics
    assert 'minigpt_requests_total{endpoint="/v1/completions",status="200"}' in metrics
