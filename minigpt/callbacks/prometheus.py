"""Serve the training metrics at `http://127.0.0.1:<port>/metrics` for Prometheus to scrape (`callbacks=prometheus`).

Prometheus pulls: it scrapes an HTTP endpoint every few seconds and stores the time series, which
Grafana (or Prometheus' own UI) plots and alerts on — dead runs, loss spikes, MFU drops. The loggers
(CSV, TensorBoard, W&B, MLflow) are unchanged; this serves the latest values beside them.
"""

from __future__ import annotations

import logging
import resource
import sys
from typing import Any

import lightning as L
import torch

from minigpt.utils.errors import ConfigError

log = logging.getLogger(__name__)

# Gauge name (served as `minigpt_<name>`) → its help text.
GAUGES = {
    "step": "optimizer steps done",
    "train_loss": "training loss of the latest step (train/loss)",
    "tokens_per_second": "training tokens per second over the throughput window (perf/tokens_per_s)",
    "mfu": "model FLOPs utilisation (perf/mfu)",
    "learning_rate": "learning rate of the first parameter group",
    "peak_memory_bytes": "peak memory: CUDA allocated on a GPU, resident set size of the process on a CPU",
    "gpu_utilization_percent": "GPU busy time over the last sample period (needs pynvml)",
}
_FROM_LOGS = {"train_loss": "train/loss", "tokens_per_second": "perf/tokens_per_s", "mfu": "perf/mfu"}


def peak_memory_bytes(device: torch.device) -> float:
    """Peak CUDA memory allocated on `device`, or the process' peak resident set size on a CPU."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports kilobytes


class PrometheusMetrics(L.Callback):
    """Global rank 0 serves the gauges `minigpt_<name>` of `GAUGES`, updated after every training batch.

    Args:
        port: TCP port; 0 picks a free one (its number is logged and kept in `self.port`).
        host: address to listen on; the default serves this machine only. Use 0.0.0.0 to let a
            Prometheus server on another machine scrape it (mind your firewall: there is no auth).
    """

    def __init__(self, port: int = 9464, host: str = "127.0.0.1") -> None:
        self.port, self.host = port, host
        self.server: Any = None
        self.gauges: dict[str, Any] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the HTTP server on rank 0, with a registry of its own (no collisions between runs)."""
        if not trainer.is_global_zero:
            return
        try:
            from prometheus_client import CollectorRegistry, Gauge, start_http_server
        except ModuleNotFoundError:
            raise ConfigError("callbacks=prometheus needs prometheus-client: pip install prometheus-client.") from None
        registry = CollectorRegistry()
        self.gauges = {name: Gauge(f"minigpt_{name}", text, registry=registry) for name, text in GAUGES.items()}
        try:
            self.server, _ = start_http_server(self.port, self.host, registry=registry)
        except OSError as err:
            raise ConfigError(
                f"callbacks.prometheus.port={self.port} on {self.host} cannot be served ({err.strerror}); "
                "choose another port, or 0 for any free one."
            ) from None
        self.port = self.server.server_port
        log.info(f"prometheus metrics at http://{self.host}:{self.port}/metrics")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Set every gauge from what this step logged, the optimizer and the device."""
        if self.server is None:
            return
        logged = trainer.callback_metrics
        values = {name: logged.get(key) for name, key in _FROM_LOGS.items()}
        values["step"] = trainer.global_step
        if trainer.optimizers:
            values["learning_rate"] = trainer.optimizers[0].param_groups[0]["lr"]
        values["peak_memory_bytes"] = peak_memory_bytes(pl_module.device)
        if pl_module.device.type == "cuda":
            try:
                values["gpu_utilization_percent"] = torch.cuda.utilization(pl_module.device)
            except (ModuleNotFoundError, RuntimeError):  # no pynvml / NVML: leave the gauge unset
                pass
        for name, value in values.items():
            if value is not None:
                self.gauges[name].set(float(value))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Stop serving when the run ends (also when it fails), freeing the port for the next job of a sweep."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
