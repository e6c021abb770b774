"""Hardware facts and live usage (CPU, RAM, GPUs via nvidia-smi). Never fails for want of a GPU."""

from __future__ import annotations

import platform
import shutil
import subprocess
import time

import psutil

MIB = 1024 * 1024
NVIDIA_FIELDS = "index,name,utilization.gpu,memory.used,memory.total,temperature.gpu"
CPU_WINDOW_S = 0.25
_cpu_read_at: float | None = None


def _torch_devices() -> tuple[bool, bool, int]:
    """(cuda, mps, num_cuda); torch is imported lazily so the server starts fast."""
    try:
        import torch
    except ImportError:
        return False, False, 0
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return cuda, mps, torch.cuda.device_count() if cuda else 0


def nvidia_gpus() -> list[dict]:
    """Per-GPU usage from `nvidia-smi`; an empty list when it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, f"--query-gpu={NVIDIA_FIELDS}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 6:
            continue

        def num(s: str) -> float | None:
            try:
                return float(s)
            except ValueError:
                return None

        gpus.append({"index": int(num(parts[0]) or 0), "name": parts[1], "gpu_util_percent": num(parts[2]),
                     "gpu_mem_used": num(parts[3]), "gpu_mem_total": num(parts[4]),
                     "gpu_temperature": num(parts[5])})
    return gpus


def hardware() -> dict:
    """Static facts about the machine (seed fields: cuda, mps, num_cuda, gpus, num_cpus, platform)."""
    cuda, mps, num_cuda = _torch_devices()
    mem = psutil.virtual_memory()
    return {
        "cuda": cuda, "mps": mps, "num_cuda": num_cuda,
        "gpus": [g["name"] for g in nvidia_gpus()],
        "num_cpus": psutil.cpu_count(logical=True),
        "num_physical_cpus": psutil.cpu_count(logical=False),
        "ram_total": round(mem.total / MIB),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def cpu_percent() -> float:
    """CPU use since the previous reading. psutil measures from its own previous call, so a first reading
    (or one right after another) would be a meaningless 0.0 on a busy machine: that one is measured over a
    short window instead."""
    global _cpu_read_at
    recent = _cpu_read_at is not None and time.monotonic() - _cpu_read_at >= CPU_WINDOW_S
    value = psutil.cpu_percent(interval=None if recent else CPU_WINDOW_S)
    _cpu_read_at = time.monotonic()
    return value


def sysstatus() -> dict:
    """Live usage: RAM in MiB, CPU percent, and the first GPU's figures (null without one)."""
    mem = psutil.virtual_memory()
    gpus = nvidia_gpus()
    first = gpus[0] if gpus else {}
    return {
        "ram_used": round((mem.total - mem.available) / MIB), "ram_total": round(mem.total / MIB),
        "ram_percent": mem.percent, "cpu_percent": cpu_percent(),
        "gpu_util_percent": first.get("gpu_util_percent"), "gpu_mem_used": first.get("gpu_mem_used"),
        "gpu_mem_total": first.get("gpu_mem_total"), "gpu_temperature": first.get("gpu_temperature"),
        "gpus": gpus, "platform": platform.system(),
    }
