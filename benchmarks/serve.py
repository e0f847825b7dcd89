"""Serving throughput and latency: continuous batching against one request at a time, same server code.

    python benchmarks/serve.py --run <sft run>/model [--clients 1 8 32] [--requests 40 160 320]
        [--max-tokens 64] [--rounds 3] [--endpoint completions|chat] [--threads 1] [--dtype float32]
        [--timing] [--timing-json F]

Each mode's server runs as `python -m minigpt.serve` in a process of its own on a free loopback port:
`continuous` with `max_batch` = the most clients, `one-at-a-time` with `max_batch=1` (the same engine;
every request waits for the one before it to finish, the queue holds the rest). Each server computes
on `--threads` threads (OMP_NUM_THREADS, set here whatever the caller's environment says), and the
clients run in this process: on a 2-core machine one server thread, its event loop and the clients
share the cores, as a server and its users on one small machine would. For each number of
concurrent clients, that many asyncio clients send greedy requests (a fixed list of the SFT tasks'
prompts, so both modes produce the same tokens) until the bounded number of requests is done:
`--endpoint completions` (default) continues each prompt for `--max-tokens` tokens unless `<|eos|>`
comes first (decoding-bound, as serving benchmarks fix the output length), `--endpoint chat` asks the
tasks' questions, whose answers are a few tokens (prefill- and overhead-bound).

Fairness on a shared machine: both servers are up at once (an idle one sleeps); each of `--rounds`
rounds measures every client count in both modes (their order alternating from round to round), so
that the settings compared with each other are measured minutes apart at most and under the same
drift of the machine's load; each setting is scored by its best round (load from other jobs only ever
adds time). The load average is sampled before every round and its range printed.
Reported per setting: generated tokens per second (all completion tokens / wall
time), p50 and p95 end-to-end latency of that round, failed requests in any round; then continuous /
one-at-a-time throughput ratios, and the p95 latency at each client count against the single-client
p95 of the same mode (the goal: ≥ 3× throughput at 8 clients with p95 no worse than 2× the
single-client latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx

from minigpt.serve.settings import SERVING_DTYPES

# Prompts of the shared SFT model's tasks (tasks/mix: arithmetic, reversal, sorting).
PROMPTS = [
    "what is 12 plus 7?",
    "reverse: garden",
    "sort: 5 3 9 1",
    "what is 41 plus 23?",
    "reverse: stone bridge",
    "sort: 8 2 6",
    "what is 3 plus 5?",
    "reverse: lamp",
]


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run: str, max_batch: int, max_queue: int, threads: int, dtype: str) -> tuple[subprocess.Popen, str]:
    """`python -m minigpt.serve` in a subprocess on `threads` threads; returns it and its base URL once
    /health answers."""
    port = free_port()
    args = [f"run={run}", f"port={port}", f"max_batch={max_batch}", f"max_queue={max_queue}", f"dtype={dtype}"]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "minigpt.serve", *args], cwd=root, env=env, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


async def load(url: str, clients: int, requests: int, max_tokens: int, endpoint: str) -> dict[str, float]:
    """`clients` concurrent clients send `requests` requests in all; tokens/s, latencies, failures."""
    latencies: list[float] = []
    timings: list[dict[str, float]] = []  # per request: the server's Server-Timing parts and the client's latency
    tokens = failed = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal tokens, failed
        while not queue.empty():
            i = queue.get_nowait()
            prompt = PROMPTS[i % len(PROMPTS)]
            body: dict = {"temperature": 0, "max_tokens": max_tokens}
            if endpoint == "chat":
                body["messages"] = [{"role": "user", "content": prompt}]
            else:
                body["prompt"] = prompt
            start = time.perf_counter()
            async with http.post(f"{url}/v1/{'chat/' if endpoint == 'chat' else ''}completions", json=body) as response:
                if response.status != 200:
                    failed += 1
                    continue
                usage = (await response.json())["usage"]
                header = response.headers.get("Server-Timing", "")
            latencies.append(time.perf_counter() - start)
            sent = (start - began) * 1000  # when it was sent, from the setting's start
            timings.append({**server_timing(header), "latency": latencies[-1] * 1000, "sent": sent, "index": i})
            tokens += usage["completion_tokens"]

    # aiohttp rather than httpx: the clients share the server's 2 cores, and httpx's async client spends
    # 3–5 ms of CPU per request against aiohttp's ~1 ms (measured on this machine), CPU that the
    # 8- and 32-client runs, sending 8–32 times as many requests per second, would take from the server.
    timeout = aiohttp.ClientTimeout(total=600)
    connector = aiohttp.TCPConnector(limit=clients + 4)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        start = began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "tokens_per_s": tokens / wall,
        "p50": statistics.median(ordered),
        "p95": percentile(ordered, 0.95),
        "failed": failed,
        "tokens": tokens,
        "timings": timings,  # type: ignore[dict-item]
    }


def percentile(ordered: list[float], q: float) -> float:
    """The `q` quantile of sorted values, by the nearest rank (with 8 values the p95 is the largest)."""
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def server_timing(header: str) -> dict[str, float]:
    """`first;dur=1.2, decode;dur=30.5, ...` -> {"first": 1.2, "decode": 30.5, ...} (milliseconds)."""
    parts = {}
    for item in filter(None, (part.strip() for part in header.split(","))):
        name, _, duration = item.partition(";dur=")
        parts[name] = float(duration)
    return parts


def print_split(results: dict[tuple[str, int], dict]) -> None:
    """Where the time of the median and of the p95 request went (`--timing`), continuous mode."""
    print("\n| clients | request | latency (ms) | first token | decode | wake | outside the engine's handler |")
    print("|---|---|---|---|---|---|---|")
    for (mode, clients), r in results.items():
        if mode != "continuous":
            continue
        ordered = sorted(r["timings"], key=lambda t: t["latency"])
        for name, q in (("p50", 0.5), ("p95", 0.95)):
            t = ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
            outside = t["latency"] - t.get("total", 0.0)
            cells = " | ".join(f"{t.get(k, float('nan')):.1f}" for k in ("first", "decode", "wake"))
            print(f"| {clients} | {name} | {t['latency']:.1f} | {cells} | {outside:.1f} |")


def main() -> None:
    """Measure both modes at every client count and print the tables (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a model folder, e.g. the README SFT run's <run>/model")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--requests",
        type=int,
        nargs="+",
        default=[40, 160, 320],
        help="requests per client count (40 at 1 client: the p95 of 8 requests would be their maximum)",
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--timing",
        action="store_true",
        help="also print where the p50 and p95 requests' time went (the server's Server-Timing header)",
    )
    parser.add_argument("--timing-json", help="write every request's timing (ms) of the best rounds to this file")
    parser.add_argument("--threads", type=int, default=1, help="compute threads of each server")
    parser.add_argument(
        "--dtype", choices=list(SERVING_DTYPES), default="float32", help="the servers' weight dtype (conf/serve.yaml)"
    )
    parser.add_argument(
        "--endpoint",
        choices=["completions", "chat"],
        default="completions",
        help="completions: decoding-bound, each request runs to --max-tokens unless <|eos|> comes; "
        "chat: the task's short answers, ending at <|end|>",
    )
    args = parser.parse_args()
    modes = {"continuous": max(args.clients), "one-at-a-time": 1}
    servers = {
        mode: start_server(args.run, max_batch, max(args.clients), args.threads, args.dtype)
        for mode, max_batch in modes.items()
    }
    loads: list[float] = []
    results: dict[tuple[str, int], dict[str, float]] = {}
    try:
        for _, url in servers.values():
            asyncio.run(load(url, 1, 2, args.max_tokens, args.endpoint))  # warm-up
        for round_ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for clients, requests in zip(args.clients, args.requests):
                for mode in order:
                    result = asyncio.run(load(servers[mode][1], clients, requests, args.max_tokens, args.endpoint))
                    best = results.get((mode, clients))
                    failed = result["failed"] + (best["failed"] if best else 0)
                    if best is None or result["tokens_per_s"] > best["tokens_per_s"]:
                        best = result
                    results[mode, clients] = {**best, "failed": failed}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=60)
    setting = f"/v1/{args.endpoint}, max_tokens {args.max_tokens}, best of {args.rounds} rounds, {args.run}"
    print(
        f"load average {min(loads):.1f}–{max(loads):.1f}; "
        f"{args.threads} thread(s) per server, {args.dtype}; {setting}\n"
    )
    print("| mode | clients | requests | tokens/s | p50 latency (s) | p95 latency (s) | failed |")
    print("|---|---|---|---|---|---|---|")
    for (mode, clients), r in results.items():
        requests = args.requests[args.clients.index(clients)]
        speed, p50, p95 = f"{r['tokens_per_s']:.0f}", f"{r['p50']:.2f}", f"{r['p95']:.2f}"
        print(f"| {mode} | {clients} | {requests} | {speed} | {p50} | {p95} | {r['failed']} |")
    print("\n| clients | throughput continuous / one-at-a-time | p95 / single-client p95 | same token count |")
    print("|---|---|---|---|")
    single = results["continuous", args.clients[0]]["p95"]
    for clients in args.clients:
        fast, slow = results["continuous", clients], results["one-at-a-time", clients]
        same = "yes" if fast["tokens"] == slow["tokens"] else f"no ({fast['tokens']:.0f} vs {slow['tokens']:.0f})"
        ratio = fast["tokens_per_s"] / slow["tokens_per_s"]
        print(f"| {clients} | **{ratio:.2f}×** | {fast['p95'] / single:.2f}× | {same} |")
    if args.timing:
        print_split(results)
    if args.timing_json:
        rows = {f"{mode} {clients}": r["timings"] for (mode, clients), r in results.items()}
        Path(args.timing_json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
