"""`callbacks=prometheus`: off by default; scraped on loopback during training, its loss is the logged loss."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import lightning as L
import pytest

from minigpt.callbacks.prometheus import GAUGES, PrometheusMetrics
from minigpt.run import train
from minigpt.utils.errors import ConfigError


class Scraper(L.Callback):
    """After each batch (and after the Prometheus callback), GET /metrics as Prometheus would; at the end,
    write what it read to `<folder>/scrapes.json`."""

    def __init__(self, folder: str) -> None:
        self.folder, self.scrapes = folder, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        (served,) = [c for c in trainer.callbacks if isinstance(c, PrometheusMetrics)]
        with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/metrics", timeout=10) as response:
            text = response.read().decode()
        lines = (line.split() for line in text.splitlines() if line.startswith("minigpt_"))
        self.scrapes.append({name.removeprefix("minigpt_"): float(value) for name, value in lines})

    def on_train_end(self, trainer, pl_module) -> None:
        (Path(self.folder) / "scrapes.json").write_text(json.dumps(self.scrapes))


def test_scraped_loss_is_the_logged_loss_at_every_step(compose_train, losses, tmp_path):
    assert "prometheus" not in compose_train().callbacks  # off by default
    cfg = compose_train(
        "callbacks=prometheus",
        "callbacks.prometheus.port=0",
        f"+callbacks.scrape._target_={__name__}.Scraper",
        f"+callbacks.scrape.folder={tmp_path}",
        "trainer.max_steps=12",
        "trainer.log_every_n_steps=1",
        "callbacks.throughput.window=5",
    )
    train(cfg)
    scrapes = json.loads((tmp_path / "scrapes.json").read_text())

    logged = losses(tmp_path / "run")
    assert len(scrapes) == 12
    for scrape in scrapes:
        step = int(scrape["step"])  # optimizer steps done; the CSV row of that step is step - 1
        assert scrape["train_loss"] == pytest.approx(logged[step - 1], abs=1e-6)
    last = scrapes[-1]
    assert set(last) >= set(GAUGES) - {"gpu_utilization_percent"}  # every gauge served (no GPU here)
    assert last["tokens_per_second"] > 0 and 0 < last["mfu"] < 1 and last["peak_memory_bytes"] > 1e6
    assert last["learning_rate"] > 0


def test_a_busy_port_is_a_one_line_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        callback = PrometheusMetrics(port=busy.getsockname()[1])
        trainer = type("Rank0", (), {"is_global_zero": True})()
        with pytest.raises(ConfigError, match="choose another port, or 0"):
            callback.on_fit_start(trainer, None)
