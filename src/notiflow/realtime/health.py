"""A ``notiflow realtime`` node's own HTTP endpoints: ``/health`` (its backplane) and ``/metrics``.

The API process answers both on its own port; a realtime node has no API, so ``notiflow realtime
--http-port`` serves these two beside the WebSocket port, for probes and scrapers.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from notiflow import __version__
from notiflow.kit.metrics import router as metrics_router
from notiflow.realtime.hub import Hub
from notiflow.realtime.redis import backplane_status


def node_app(hub: Hub, connections: Callable[[], int]) -> FastAPI:
    """``/health`` is 503 ``degraded`` while the backplane cannot reach Redis (this node then
    serves its own clients only); ``/metrics`` is the process's Prometheus registry."""
    app = FastAPI(title="notiflow realtime", openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(metrics_router)

    @app.get("/health")
    async def health() -> JSONResponse:
        backplane = backplane_status(hub)
        healthy = backplane in ("ok", "disabled")
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "version": __version__,
                "backplane": backplane,
                "connections": connections(),
            },
            status_code=200 if healthy else 503,
        )

    return app
