"""The peak FLOP/s that model FLOPs utilisation (MFU) divides by: a datasheet for GPUs, a measurement on CPUs.

GPU numbers are the vendors' dense (no 2:4 sparsity) bf16/fp16 tensor-core peaks; a float32 run on a GPU
is therefore measured against its bf16 peak, as PaLM's MFU definition does for the hardware's best mode.
A CPU has no useful datasheet number, so its peak is what a large matmul actually reaches with this
process's threads, measured once per (CPU, threads, dtype) and cached.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from minigpt.utils.io import atomic_write_text

# Checked in order, so that "H100 PCIe" wins over "H100" and "A100" over "A10".
GPU_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("V100", 125e12),
    ("T4", 65e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)
CACHE_FILE = "peak_flops.json"


def gpu_peak_flops(device_name: str) -> float | None:
    """The datasheet peak of a known GPU (by `torch.cuda.get_device_name`), else `None`."""
    for key, flops in GPU_PEAK_FLOPS:
        if key in device_name:
            return flops
    return None


def measure_matmul_flops(dtype: torch.dtype, size: int = 512, seconds: float = 0.3) -> float:
    """FLOP/s of repeated (size × size) @ (size × size) products on the CPU: 2·size³ FLOPs each."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):  # warm up (thread pool, caches)
        a @ b
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        a @ b
        count += 1
    return 2.0 * size**3 * count / elapsed


def has_avx512_bf16() -> bool:
    """Whether this CPU has AVX-512 BF16 instructions (Linux `/proc/cpuinfo` flags).

    Without them bfloat16 matmuls are emulated: on this project's CPUs ~13× slower than float32, where
    with them bf16-mixed ran 1.25× faster. Benchmarks print it next to any bf16 number.
    """
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and "avx512_bf16" in cpuinfo.read_text().split()


def _cpu_key(dtype: torch.dtype) -> str:
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}|threads={torch.get_num_threads()}|{dtype}"


def cpu_peak_flops(dtype: torch.dtype, cache_dir: str | Path | None) -> float:
    """The measured matmul peak of this CPU for `dtype`, from `<cache_dir>/peak_flops.json` when known."""
    key = _cpu_key(dtype)
    path = Path(cache_dir) / CACHE_FILE if cache_dir else None
    cached: dict[str, float] = json.loads(path.read_text()) if path and path.exists() else {}
    if key not in cached:
        cached[key] = measure_matmul_flops(dtype)
        if path:
            atomic_write_text(path, json.dumps(cached, indent=1))
    return cached[key]


def precision_dtype(precision: str) -> torch.dtype:
    """The matmul dtype a Lightning precision setting computes in ("bf16-mixed" → bfloat16, …)."""
    if "bf16" in precision:
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float32


def peak_flops(device: torch.device, precision: str, cache_dir: str | Path | None) -> float | None:
    """Peak FLOP/s for one device of this run: datasheet (GPU), measured (CPU), `None` if unknown."""
    if device.type == "cuda":
        return gpu_peak_flops(torch.cuda.get_device_name(device))
    if device.type == "cpu":
        dtype = precision_dtype(precision)
        # fp16 autocast runs as bf16 on a CPU (Lightning switches it), so measure what will run.
        return cpu_peak_flops(torch.bfloat16 if dtype == torch.float16 else dtype, cache_dir)
    return None
