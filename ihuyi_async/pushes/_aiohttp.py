"""The aiohttp adapter: serve a :class:`PushReceiver` from an ``aiohttp.web`` app.

Owns :func:`aiohttp_handler` and :func:`aiohttp_app`. aiohttp is imported only
when one of them is called, so the pushes package works without the extra.
The adapter reads the request and writes the answer; every decision is the
receiver's (the same pipeline as its ASGI entry point).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._receiver import PushReceiver, _Disconnected, _Incoming, _MalformedBody

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["aiohttp_app", "aiohttp_handler"]


def _web() -> Any:
    try:
        from aiohttp import web
    except ImportError as exc:  # pragma: no cover - the test extra installs aiohttp
        raise ImportError(
            "the aiohttp adapter needs aiohttp: pip install 'ihuyi-async[aiohttp]'"
        ) from exc
    return web


def _body_errors() -> tuple[tuple[type[Exception], ...], type[Exception]]:
    """aiohttp's errors for a body it could not read (framing, a bad ``Content-Encoding``),
    and the error of a client gone mid-body."""
    from aiohttp import http_exceptions, web

    return (web.RequestPayloadError, http_exceptions.HttpProcessingError), ConnectionError


def aiohttp_handler(
    receiver: PushReceiver,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp request handler that serves ``receiver``.

    Route every method to it, so wrong methods get the receiver's 405::

        app.router.add_route("*", "/ihuyi/push", aiohttp_handler(receiver))
        app.router.add_route("*", "/ihuyi/push/{token}", aiohttp_handler(receiver))

    The body is read from the stream up to the receiver's ``max_body``
    (aiohttp's own ``client_max_size`` is not involved). The peer address is
    ``request.remote``; ``X-Forwarded-For`` is judged by the receiver. A body
    aiohttp cannot frame is answered 400; a client gone mid-body gets nothing
    (aiohttp would otherwise log the ``ConnectionResetError`` as a handler error).

    :raises ImportError: aiohttp is not installed.

    .. versionadded:: 0.1.0
    """
    web_module = _web()
    framing_error, gone_error = _body_errors()

    async def handle(request: web.Request) -> web.StreamResponse:
        incoming = _Incoming(
            method=request.method.upper(),
            path=request.path,
            query_string=request.query_string,
            content_type=request.headers.get("Content-Type"),
            content_length=request.headers.get("Content-Length"),
            peer=request.remote,
            forwarded_for=request.headers.getall("X-Forwarded-For", []),
        )

        async def read_body(limit: int) -> bytes | None:
            chunks: list[bytes] = []
            size = 0
            try:
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > limit:
                        return None
                    chunks.append(chunk)
            except framing_error as exc:
                raise _MalformedBody from exc
            except gone_error as exc:
                raise _Disconnected from exc
            return b"".join(chunks)

        try:
            answer = await receiver._serve(incoming, read_body)
        except _Disconnected:
            # Nobody to answer; a response object keeps aiohttp from logging a handler error.
            gone: web.StreamResponse = web_module.Response(status=400)
            return gone
        response: web.StreamResponse = web_module.Response(
            status=answer.status,
            body=answer.body,
            content_type="text/plain",
            charset="utf-8",
            headers=dict(answer.headers),
        )
        return response

    return handle


def aiohttp_app(receiver: PushReceiver) -> web.Application:
    """A sub-application serving ``receiver`` at its root and at ``/<token>``.

    ::

        app.add_subapp("/ihuyi/push/", aiohttp_app(receiver))

    :raises ImportError: aiohttp is not installed.

    .. versionadded:: 0.1.0
    """
    web_module = _web()
    app: web.Application = web_module.Application()
    handler = aiohttp_handler(receiver)
    app.router.add_route("*", "/", handler)
    app.router.add_route("*", "/{tail:.+}", handler)
    return app
