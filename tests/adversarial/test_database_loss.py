"""Regression from ``make faults``: a PostgreSQL connection killed under a request (the
server restarted, a backend terminated) was a 500; it is a 503 with Retry-After."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from ecrin_platform.problems import install_problem_handlers, is_disconnect

POSTGRES_URL = os.environ.get("ECRIN_TEST_POSTGRES_URL")


async def _terminated_connection_error() -> Exception:
    """The exception SQLAlchemy raises for a query on a backend that was terminated."""
    assert POSTGRES_URL
    engine = create_async_engine(POSTGRES_URL)
    admin = create_async_engine(POSTGRES_URL)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(sa.text("select pg_backend_pid()"))).scalar()
            async with admin.connect() as other:
                await other.execute(sa.text("select pg_terminate_backend(:p)"), {"p": pid})
            await asyncio.sleep(0.1)
            try:
                await conn.execute(sa.text("select 1"))
            except Exception as exc:  # noqa: BLE001
                return exc
    finally:
        await engine.dispose()
        await admin.dispose()
    raise AssertionError("the terminated connection still answered")


def _app(exc: Exception) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    return app


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="needs ECRIN_TEST_POSTGRES_URL")
async def test_a_terminated_connection_is_a_503():
    exc = await _terminated_connection_error()
    assert isinstance(exc, sa.exc.DBAPIError) and not isinstance(exc, sa.exc.OperationalError)
    assert is_disconnect(exc)
    transport = httpx.ASGITransport(app=_app(exc))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.headers["content-type"] == "application/problem+json"


async def test_other_driver_errors_stay_500():
    exc = sa.exc.DBAPIError("select 1", {}, ValueError("not a disconnect"))
    assert not is_disconnect(exc)
    transport = httpx.ASGITransport(app=_app(exc), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
