"""respx integration: route the provider's hosts to an emulator inside a respx router.

Owns :func:`respx_side_effect` and :func:`mock_ihuyi`. respx is imported only when
:func:`mock_ihuyi` is called without a router, so this module costs nothing to
users who do not have it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import httpx

from ._emulator import Emulator
from ._http import respond

if TYPE_CHECKING:
    import respx

__all__ = ["PROVIDER_HOSTS", "mock_ihuyi", "respx_side_effect"]

#: Every host the provider's SMS APIs answer on (both flavours, ``.com`` and ``.cn``).
PROVIDER_HOSTS: tuple[str, ...] = (
    "106.ihuyi.com",
    "106.ihuyi.cn",
    "api.ihuyi.com",
    "api.ihuyi.cn",
)


def respx_side_effect(emulator: Emulator) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """An async respx side effect answering every request from ``emulator``.

    Works with async httpx clients (respx awaits the result)::

        respx_mock.post(host="106.ihuyi.com").mock(side_effect=respx_side_effect(emulator))
    """

    async def side_effect(request: httpx.Request) -> httpx.Response:
        return await respond(emulator, request)

    return side_effect


def mock_ihuyi(
    emulator: Emulator,
    router: respx.Router | None = None,
    *,
    hosts: Sequence[str] = PROVIDER_HOSTS,
) -> respx.Route:
    """Add a route to ``router`` (default: the global ``respx.mock``) sending the
    provider's ``hosts`` to ``emulator``; return the route (``.calls``, ``.called``).

    >>> import respx
    >>> emulator = Emulator()
    >>> with respx.mock(assert_all_called=False) as router:
    ...     route = mock_ihuyi(emulator, router)
    """
    if router is None:
        import respx

        router = respx.mock
    return router.route(host__in=list(hosts)).mock(side_effect=respx_side_effect(emulator))
