"""Peak FLOP/s for MFU: datasheet GPUs, a CPU measured once and cached; MFU logged during training."""

from __future__ import annotations

import pytest
import torch

from minigpt.run import train
from minigpt.scale import peak_flops as pf


@pytest.mark.parametrize(
    ("name", "flops"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA A100-SXM4-40GB", 312e12),
        ("NVIDIA A10", 125e12),
        ("NVIDIA L4", 121e12),
        ("Some Future GPU", None),
    ],
)
def test_known_gpus_get_their_datasheet_peak(name, flops):
    assert pf.gpu_peak_flops(name) == flops


def test_cpu_peak_is_measured_once_then_read_from_the_cache(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pf, "measure_matmul_flops", lambda dtype: calls.append(dtype) or 5e10)
    assert pf.cpu_peak_flops(torch.float32, tmp_path) == 5e10
    assert pf.cpu_peak_flops(torch.float32, tmp_path) == 5e10
    assert pf.cpu_peak_flops(torch.bfloat16, tmp_path) == 5e10  # another dtype: its own measurement
    assert calls == [torch.float32, torch.bfloat16]
    assert (tmp_path / pf.CACHE_FILE).exists()


def test_matmul_measurement_is_a_plausible_rate():
    rate = pf.measure_matmul_flops(torch.float32, size=128, seconds=0.05)
    assert 1e8 < rate < 1e13  # between a very slow core and far more than 2 CPU cores can do


def test_training_logs_tokens_per_second_and_mfu(compose_train):
    cfg = compose_train("callbacks.throughput.window=2", "trainer.log_every_n_steps=1", "trainer.max_steps=8")
    metrics = train(cfg)
    assert metrics["perf/tokens_per_s"] > 0
    assert 0 < metrics["perf/mfu"] < 1
