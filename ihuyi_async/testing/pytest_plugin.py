"""pytest plugin for ihuyi-async (registered through the ``pytest11`` entry point ``ihuyi``).

Fixtures, all function-scoped and synchronous (so they work the same under
pytest-asyncio, anyio's pytest plugin, or no async plugin at all):

``ihuyi_emulator``
    an :class:`~ihuyi_async.testing.Emulator`; at teardown it fails the test when a
    call was not a provider call or a scheduled fault went unused (``strict=False``
    turns that off).
``ihuyi_client``
    an :class:`~ihuyi_async.IhuyiClient` wired to that emulator: its first account,
    the emulator's clock, the in-process transport (or the loopback server with
    ``loopback=True``). It holds no open socket between calls; the fixture closes it
    at teardown when the test did not.
``ihuyi_server``
    an :class:`~ihuyi_async.testing.EmulatorServer` serving ``ihuyi_emulator`` on
    127.0.0.1 (a free port), for clients in other threads, processes or languages.
``ihuyi_verifier``
    a :class:`~ihuyi_async.verify.Verifier` sending through ``ihuyi_client`` on the
    emulator's clock (the trial template unless ``verifier={...}`` says otherwise: id 1
    on the ``json`` flavour, its text on the legacy one; stores in memory): read the texted code with
    ``ihuyi_emulator.last_code_for(number)``, move time with
    ``ihuyi_emulator.clock.advance(seconds)``.

Configure them with the ``ihuyi`` marker; its keywords are
:class:`~ihuyi_async.testing.Emulator` keywords plus:

* ``client``: a dict of extra :class:`~ihuyi_async.IhuyiClient` keywords
  (``{"flavour": "json", "limiter": None}``);
* ``verifier``: a dict of :class:`~ihuyi_async.verify.Verifier` keywords
  (``{"resend_after": 30, "limits": VerifyLimits(per_source_per_hour=3)}``);
* ``loopback``: ``ihuyi_client`` talks to ``ihuyi_server`` over a real socket;
* ``strict``: check for loose ends at teardown (default ``True``).

::

    @pytest.mark.ihuyi(balance=3, client={"flavour": "json"})
    async def test_signup(ihuyi_client, ihuyi_emulator): ...

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from ._emulator import Emulator
from ._server import EmulatorServer

if TYPE_CHECKING:
    from ihuyi_async import IhuyiClient
    from ihuyi_async.verify import Verifier

__all__ = ["ihuyi_client", "ihuyi_emulator", "ihuyi_server", "ihuyi_verifier", "pytest_configure"]

#: The provider's trial template (id 1) as content, for the legacy flavour's ``send``.
_TRIAL_CONTENT = "您的验证码是：{code}。请不要把验证码泄露给其他人。"
_PLUGIN_KEYS = ("client", "verifier", "loopback", "strict")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ihuyi(**options): configure the ihuyi_emulator / ihuyi_client fixtures: Emulator "
        "keywords (accounts, balance, strict_templates, limits, blacklist, receipt_url, ...), "
        "client={IhuyiClient keywords}, verifier={Verifier keywords}, loopback=False, strict=True",
    )


@dataclass
class _Options:
    emulator: dict[str, Any] = field(default_factory=dict)
    client: dict[str, Any] = field(default_factory=dict)
    verifier: dict[str, Any] = field(default_factory=dict)
    loopback: bool = False
    strict: bool = True


def _options(request: pytest.FixtureRequest) -> _Options:
    options = _Options()
    # Closest marker wins: apply from the farthest (module) to the nearest (function).
    for marker in reversed(list(request.node.iter_markers("ihuyi"))):
        if marker.args:
            raise pytest.UsageError("@pytest.mark.ihuyi takes keyword arguments only")
        for key, value in marker.kwargs.items():
            if key == "client":
                options.client.update(dict(value))
            elif key == "verifier":
                options.verifier.update(dict(value))
            elif key == "loopback":
                options.loopback = bool(value)
            elif key == "strict":
                options.strict = bool(value)
            else:
                options.emulator[key] = value
    return options


@pytest.fixture
def ihuyi_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """An emulator of the ihuyi service, configured by ``@pytest.mark.ihuyi(...)``."""
    options = _options(request)
    emulator = Emulator(**options.emulator)
    yield emulator
    if options.strict:
        emulator.verify()


@pytest.fixture
def ihuyi_server(ihuyi_emulator: Emulator) -> Iterator[EmulatorServer]:
    """``ihuyi_emulator`` served on 127.0.0.1 (a free port) in a thread."""
    with EmulatorServer(ihuyi_emulator) as server:
        yield server


def _close(client: IhuyiClient) -> None:
    """Close ``client`` after its test's event loop ended: its transports hold no socket
    (in-process, or loopback without keep-alive), so a fresh loop in a worker thread can
    close it (any loop, whatever the test ran under)."""
    import asyncio

    if client.is_closed:
        return
    worker = threading.Thread(target=asyncio.run, args=(client.aclose(),), name="ihuyi-close")
    worker.start()
    worker.join(10.0)


@pytest.fixture
def ihuyi_client(request: pytest.FixtureRequest, ihuyi_emulator: Emulator) -> Iterator[IhuyiClient]:
    """An :class:`~ihuyi_async.IhuyiClient` wired to ``ihuyi_emulator``."""
    import httpx

    from ihuyi_async import IhuyiClient

    options = _options(request)
    account = ihuyi_emulator.accounts[0]
    kwargs: dict[str, Any] = {"clock": ihuyi_emulator.clock}
    if options.loopback:
        server: EmulatorServer = request.getfixturevalue("ihuyi_server")
        kwargs["base_url"] = server.url
        # No keep-alive: no socket stays open after a call, so the client needs no closing.
        kwargs["limits"] = httpx.Limits(max_keepalive_connections=0)
    else:
        kwargs["transport"] = ihuyi_emulator.transport
    kwargs.update(options.client)
    client = IhuyiClient(account, ihuyi_emulator.api_key_of(account), **kwargs)
    yield client
    _close(client)


@pytest.fixture
def ihuyi_verifier(
    request: pytest.FixtureRequest, ihuyi_client: IhuyiClient, ihuyi_emulator: Emulator
) -> Verifier:
    """A :class:`~ihuyi_async.verify.Verifier` on ``ihuyi_client`` and the emulator's clock.

    Unless the marker's ``verifier=`` says otherwise it sends the provider's trial template:
    as ``template_id=1`` on the ``json`` flavour, as its text (``content=``) on the legacy
    flavour, which has no template mode.
    """
    from ihuyi_async.verify import Verifier

    kwargs: dict[str, Any] = dict(_options(request).verifier)
    if "content" not in kwargs and "template_id" not in kwargs and kwargs.get("channel") != "voice":
        if ihuyi_client.flavour == "legacy":
            kwargs["content"] = _TRIAL_CONTENT
        else:
            kwargs["template_id"] = 1
    kwargs.setdefault("clock", ihuyi_emulator.clock)
    return Verifier(ihuyi_client, **kwargs)
