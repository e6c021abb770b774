"""Hardware facts and live resource usage."""

from fastapi import APIRouter

from matelix import system_info

router = APIRouter(tags=["system"])


@router.get("/hardware")
def hardware() -> dict:
    """CUDA/MPS availability, GPUs, CPU count, RAM, platform."""
    return system_info.hardware()


@router.get("/sysstatus")
def sysstatus() -> dict:
    """Live CPU, RAM (MiB) and GPU usage; GPU fields are null without nvidia-smi."""
    return system_info.sysstatus()
