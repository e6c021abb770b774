"""Liveness: always public, answers without touching torch or the disk."""

from fastapi import APIRouter
from pydantic import BaseModel

from matelix import __version__

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: str
    version: str


@router.get("/health", response_model=Health)
def health() -> Health:
    """Liveness probe (public)."""
    return Health(status="ok", version=__version__)
