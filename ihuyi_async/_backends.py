"""Which backend carries the calls, built from the client's options.

* ``"httpx"`` (default): one :class:`httpx.AsyncClient` over our sharded pool
  (:class:`~._transport.ShardedPoolTransport`), or over a ``transport=`` you give
  (tests: ``emulator.transport``, respx, mocks), or your own ``http_client=``
  (never closed by us); asyncio and trio.
* ``"aiohttp"`` (extra ``aiohttp``): a native :class:`aiohttp.ClientSession`; asyncio only.
* ``"native"`` (extra ``native``): our own keep-alive HTTP/1.1 client
  (:class:`~._native.NativeTransport`, ``asyncio.Protocol`` + ``httptools``); asyncio only.

``verify=`` (``True``, a CA file path or an :class:`ssl.SSLContext`) reaches every
backend's TLS; it cannot turn verification off.
"""

from __future__ import annotations

import ssl
from typing import Literal

import httpx

from ._aiohttp import AiohttpTransport
from ._config import DEFAULT_KEEPALIVE_EXPIRY
from ._native import NativeTransport, ssl_context
from ._transport import HttpxTransport, ShardedPoolTransport, Transport

__all__ = ["Backend", "build_wire", "default_limits"]

Backend = Literal["httpx", "aiohttp", "native"]

BACKENDS: tuple[str, ...] = ("httpx", "aiohttp", "native")


def default_limits() -> httpx.Limits:
    """100 connections, idle ones kept :data:`DEFAULT_KEEPALIVE_EXPIRY` seconds."""
    return httpx.Limits(
        max_connections=100, max_keepalive_connections=100, keepalive_expiry=DEFAULT_KEEPALIVE_EXPIRY
    )


def build_wire(
    backend: str,
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits | None,
    transport: httpx.AsyncBaseTransport | None,
    http_client: httpx.AsyncClient | None,
    max_bytes: int,
    verify: ssl.SSLContext | str | bool = True,
) -> Transport:
    """The backend for these options.

    :raises ValueError: an unknown backend, or options that do not go together.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'httpx', 'aiohttp' or 'native', not {backend!r}")
    if backend != "httpx" and (transport is not None or http_client is not None):
        raise ValueError("transport= and http_client= are httpx objects: use backend='httpx'")
    if transport is not None and http_client is not None:
        raise ValueError("pass transport= or http_client=, not both")
    custom_ca = verify is not True
    context = ssl_context(verify) if custom_ca else None  # ValueError on a bad verify=
    if custom_ca and (transport is not None or http_client is not None):
        raise ValueError("verify= configures our own pool: set it on your transport= or http_client=")
    limits = limits if limits is not None else default_limits()
    if backend == "native":
        return NativeTransport(
            connect_timeout=timeout.connect,
            read_timeout=timeout.read,
            pool_timeout=timeout.pool,
            max_connections=limits.max_connections or 0,
            keepalive_expiry=limits.keepalive_expiry,
            max_bytes=max_bytes,
            verify=context if context is not None else True,
        )
    if backend == "aiohttp":
        return AiohttpTransport(
            connect_timeout=timeout.connect,
            read_timeout=timeout.read,
            pool_timeout=timeout.pool,
            max_connections=limits.max_connections or 0,
            keepalive_expiry=limits.keepalive_expiry,
            max_bytes=max_bytes,
            ssl_context=context,
        )
    if http_client is not None:
        return HttpxTransport(http_client, owned=False, max_bytes=max_bytes)
    # httpcore's pool costs grow with its size: the same total in pools of ten.
    pool = transport if transport is not None else ShardedPoolTransport(
        limits, verify=context if context is not None else True
    )
    client = httpx.AsyncClient(
        timeout=timeout, limits=limits, transport=pool, follow_redirects=False, trust_env=False
    )
    traced = isinstance(pool, (ShardedPoolTransport, httpx.AsyncHTTPTransport))
    return HttpxTransport(client, owned=True, max_bytes=max_bytes, traced=traced)
