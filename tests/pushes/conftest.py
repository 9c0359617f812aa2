"""Fixtures of the push tests (helpers live in ``push_servers``)."""

from __future__ import annotations

import pytest

from .push_servers import ServeFactory, serve_aiohttp_receiver, serve_fastapi


@pytest.fixture(params=["fastapi", "aiohttp"])
def serve(request: pytest.FixtureRequest) -> ServeFactory:
    """Serve a receiver from a real FastAPI (uvicorn) or aiohttp app; yields its push URL."""
    return serve_fastapi if request.param == "fastapi" else serve_aiohttp_receiver
