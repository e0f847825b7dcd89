"""Bad requests get a 4xx in the OpenAI error shape and the server keeps serving; limits, keys, timeouts,
and a client that goes away mid-stream frees its batch row."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from serve_fixtures import chat_model_folder, running_server

CHAT = "/v1/chat/completions"
HELLO = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chat_model_folder(tmp_path_factory.mktemp("limits"), endless=True)


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert param is None or error["param"] == param
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (json.dumps({**HELLO, "temperature": "hot"}).encode(), "temperature"),
        (json.dumps({**HELLO, "n": "2"}).encode(), "n"),
        (json.dumps({**HELLO, "frobnicate": True}).encode(), "frobnicate"),
        (json.dumps({"max_tokens": 4}).encode(), "messages"),
        (json.dumps({**HELLO, "messages": [{"role": "wizard", "content": "hi"}]}).encode(), "messages.0.role"),
        (json.dumps({**HELLO, "messages": []}).encode(), "messages"),
        (json.dumps({**HELLO, "max_tokens": 0}).encode(), "max_tokens"),
        (json.dumps({**HELLO, "max_tokens": 10**6}).encode(), "max_tokens"),
        (json.dumps({**HELLO, "temperature": 3.5}).encode(), "temperature"),
        (json.dumps({**HELLO, "stop": ["a", "b", "c", "d", "e"]}).encode(), "stop"),
    ],
)
def test_malformed_request_is_a_400_and_the_server_goes_on(
    folder: Path, body: bytes, param: str | None, served: str
) -> None:
    response = httpx.post(f"{served}{CHAT}", content=body, headers={"Content-Type": "application/json"})
    assert_openai_error(response, 400, param)
    assert httpx.post(f"{served}{CHAT}", json=HELLO).status_code == 200


@pytest.fixture(scope="module")
def served(folder: Path):
    with running_server(folder, max_body_bytes=2000) as url:
        yield url


def test_other_client_errors(served: str) -> None:
    assert_openai_error(httpx.post(f"{served}{CHAT}", json={**HELLO, "model": "gpt-9"}), 404, "model")
    assert_openai_error(httpx.get(f"{served}/v1/nothing"), 404)
    assert_openai_error(httpx.get(f"{served}{CHAT}"), 405)
    big = {**HELLO, "messages": [{"role": "user", "content": "x" * 5000}]}
    assert_openai_error(httpx.post(f"{served}{CHAT}", json=big), 413)
    client = openai.OpenAI(base_url=f"{served}/v1", api_key="-", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="minigpt", messages=HELLO["messages"], max_tokens=10**6)
    assert httpx.post(f"{served}{CHAT}", json=HELLO).status_code == 200


def test_api_key(folder: Path) -> None:
    with running_server(folder, api_key="secret") as url:
        assert_openai_error(httpx.post(f"{url}{CHAT}", json=HELLO), 401)
        assert_openai_error(httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="secret", max_retries=0)
        assert client.chat.completions.create(model="minigpt", messages=HELLO["messages"], max_tokens=3).choices
        assert httpx.get(f"{url}/health").status_code == 200  # health and the page need no key


def wait_for_idle(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/health").json()["batch_size"] != 0:
        assert time.monotonic() < deadline, "the batch row was never freed"
        time.sleep(0.02)


def test_full_server_says_429_and_a_cancelled_stream_frees_its_row(folder: Path) -> None:
    long = {**HELLO, "max_tokens": 1000, "temperature": 0, "stream": True}  # greedy: never ends early
    with running_server(folder, max_batch=1, max_queue=0, retry_after_s=2) as url, httpx.Client() as client:
        with client.stream("POST", f"{url}{CHAT}", json=long) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")  # the stream is running: its request holds the one row
            busy = httpx.post(f"{url}{CHAT}", json=HELLO)
            assert_openai_error(busy, 429)
            assert busy.headers["Retry-After"] == "2"
        # Leaving the block closed the connection mid-stream: the engine frees the row.
        wait_for_idle(url)
        assert httpx.post(f"{url}{CHAT}", json=HELLO).status_code == 200


def test_request_over_its_time_is_a_504_and_frees_its_row(folder: Path) -> None:
    # 1000 tokens of the tiny model took under 0.3 s on a quiet core: the limits must be well below that.
    with running_server(folder, request_timeout_s=0.1) as url:
        assert_openai_error(httpx.post(f"{url}{CHAT}", json={**HELLO, "max_tokens": 1000, "temperature": 0}), 504)
        wait_for_idle(url)
        assert httpx.post(f"{url}{CHAT}", json=HELLO).status_code == 200


def test_client_leaving_a_plain_request_frees_its_row(served: str) -> None:
    with pytest.raises(httpx.ReadTimeout):  # the client gives up long before 1000 tokens are made
        httpx.post(f"{served}{CHAT}", json={**HELLO, "max_tokens": 1000, "temperature": 0}, timeout=0.1)
    wait_for_idle(served, timeout=3.0)
    metrics = httpx.get(f"{served}/metrics").text
    assert 'minigpt_requests_total{endpoint="/v1/chat/completions",status="499"}' in metrics


def test_server_timing_header_splits_the_latency(served: str) -> None:
    """A plain answer says where its time went (W3C Server-Timing, ms): the parts add up to its total,
    which is within what the client measured."""
    start = time.perf_counter()
    response = httpx.post(f"{served}{CHAT}", json={**HELLO, "max_tokens": 8})
    client_ms = (time.perf_counter() - start) * 1000
    parts = {}
    for item in response.headers["server-timing"].split(","):
        name, _, duration = item.strip().partition(";dur=")
        parts[name] = float(duration)
    assert set(parts) == {"first", "decode", "wake", "total"} and min(parts.values()) >= 0
    assert parts["first"] + parts["decode"] + parts["wake"] == pytest.approx(parts["total"], abs=0.03)
    assert 0 < parts["total"] <= client_ms
