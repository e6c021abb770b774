"""Prometheus text exposition of the lab's metrics."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from matelix.server.metrics import CONTENT_TYPE

router = APIRouter(tags=["system"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(request: Request) -> Response:
    """Requests, generated tokens, queue depth, active requests, time to first token, training progress."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
