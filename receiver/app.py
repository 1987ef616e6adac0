"""The receiver's FastAPI application: `uvicorn receiver.app:create_app --factory`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from carepath.events import prefect_api_url
from carepath.settings import Settings, get_settings
from receiver.announce import Announcer
from receiver.customers import router as customers_router
from receiver.db import make_async_engine
from receiver.errors import Rejected, Unavailable, rejected_handler, signature_handler, unavailable_handler
from receiver.inbox_writer import InboxWriter
from receiver.portal import router as portal_router
from receiver.rate_limits import RequestRates, within_rate
from receiver.signatures import SignatureError
from receiver.tracking import router as tracking_router
from receiver.webhooks import router as webhook_router

logger = logging.getLogger("carepath.receiver")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the receiver; settings default to the process's (environment and .env)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_async_engine(settings.database_url)
        api_url = prefect_api_url(settings.prefect_api_url)
        announcer = Announcer(engine, api_url=api_url, interval=settings.announce_interval_ms / 1000)
        writer = InboxWriter(
            engine,
            max_rows=settings.receiver_batch_rows,
            max_wait=settings.receiver_batch_wait_ms / 1000,
            on_flush=announcer.notify,
        )
        app.state.settings, app.state.engine, app.state.writer = settings, engine, writer
        announcer.start()
        writer.start()
        try:
            yield
        finally:
            await writer.stop()
            await announcer.stop()
            await engine.dispose()

    app = FastAPI(title="Carepath receiver", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.rates = RequestRates(
        per_client=settings.receiver_rate_limit_per_client,
        per_source=settings.receiver_rate_limit_per_source,
    )
    app.add_exception_handler(Rejected, rejected_handler)
    app.add_exception_handler(SignatureError, signature_handler)
    app.add_exception_handler(Unavailable, unavailable_handler)
    limited = [Depends(within_rate)]  # every route but /healthz: per client, and per source for webhooks
    app.include_router(webhook_router, dependencies=limited)
    app.include_router(tracking_router, dependencies=limited)
    app.include_router(customers_router, dependencies=limited)
    app.include_router(portal_router, dependencies=limited)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
