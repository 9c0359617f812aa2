"""The emulator: the provider model with its faces, its faults and its outbox.

Owns :class:`Emulator`, which puts together the pieces of this package, one concern
each:

* :mod:`~ihuyi_async.testing._rules`: the provider's rules, from its documentation;
* :mod:`~ihuyi_async.testing._model`: the provider model (accounts, numbers,
  templates, limits, decisions) and its records; the emulator's documented guesses;
* :mod:`~ihuyi_async.testing._http`: the HTTP faces (ASGI app, httpx transport, respx
  side effect), over :mod:`~ihuyi_async.testing._wire` (what a request's bytes say);
* :mod:`~ihuyi_async.testing._faults`: what can go wrong with one call;
* :mod:`~ihuyi_async.testing._outbox`: the pushes to the customer's URL;
* :mod:`~ihuyi_async.testing._inbox`: the live web inbox and its JSON API;
* :mod:`~ihuyi_async.testing._server` (over :mod:`~ihuyi_async.testing._http1`): the
  loopback server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager

import httpx

from .._clock import Clock
from ..pushes._asgi import Receive, Scope, Send
from . import _http
from ._faults import Fault, FaultPlan
from ._model import Limits, ProviderModel, SentMessage, Template
from ._outbox import Outbox, PushRecord

__all__ = ["Emulator"]


class Emulator(ProviderModel):
    """An in-memory ihuyi SMS service that behaves like the provider.

    >>> emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=1000)

    Point a client at ``transport`` (an :class:`~ihuyi_async.testing.EmulatorTransport`, in-process) or :attr:`app` (ASGI; serve it
    on loopback with :class:`~ihuyi_async.testing.EmulatorServer`). Inspect
    :attr:`messages`, :attr:`requests` and :attr:`pushes`; move :attr:`clock`.

    :param accounts: APIID -> APIKEY.
    :param balance: messages left, for every account (an ``int``) or per account.
    :param clock: the emulator's time (signature window, limits, smsids, record
        times). Default: a :class:`~ihuyi_async.FakeClock` started at the real time
        with ``auto_advance=True``: it moves when a test moves it or when something
        sleeps on it (a client sharing it waits its limiter's turn instantly).
    :param time_window: seconds the dynamic password's ``time`` may differ from now (40501).
    :param strict_templates: full-content sends must match an approved template (4072).
    :param limits: the per-number limits; ``True`` for the provider's, ``False`` for none.
    :param blacklist: numbers answered 4030.
    :param sensitive_words: words answered 407.
    :param receipt_url: where delivery receipts are pushed (``None``: no pushes).
    :param reply_url: where replies are pushed (default: ``receipt_url``).
    :param template_url: where template reviews are pushed (default: ``receipt_url``).
    :param auto_receipts: queue a ``DELIVRD`` receipt for every accepted message.
    :param push_transport: httpx transport for pushes (e.g. ``httpx.ASGITransport(app)``).
    :param time_scale: multiplies the provider's push retry waits (60, 120, 180 s).
    :param push_retries: retries after a failed push (the provider's: 3).
    :param max_length_legacy: longest content on ``webservice/sms.php`` (4073).
    :param max_length_json: longest content on ``sms/Submit.json`` (4073).
    :param seed: seed of the probabilistic faults' random draws.
    :param flavours: the API flavours answered, ``"legacy"`` (``webservice/sms.php``)
        and ``"json"`` (``sms/*.json``); by default both.
    :param products: APIID -> product for paths two products share: ``"marketing"``
        (``webservice/sms.php`` as the marketing product: several numbers, ``stime``,
        ``task_id`` receipts) or ``"voice-notice"`` (``webservice/voice.php`` as voice
        notices, not codes). International SMS (``isms.php``) and the newer voice path
        (``vm/*.json``) need no mapping.
    :param product_limits: product name -> its per-number limits (``True``: the SMS
        defaults, ``False``: none); default: ``limits`` for every product, marketing
        without its daily caps.
    """

    def __init__(
        self,
        accounts: Mapping[str, str] | None = None,
        balance: int | Mapping[str, int] = 1000,
        *,
        clock: Clock | None = None,
        time_window: float = 300.0,
        strict_templates: bool = False,
        limits: Limits | bool = True,
        blacklist: Iterable[str] = (),
        sensitive_words: Iterable[str] = (),
        receipt_url: str | None = None,
        reply_url: str | None = None,
        template_url: str | None = None,
        auto_receipts: bool = True,
        push_transport: httpx.AsyncBaseTransport | None = None,
        time_scale: float = 0.001,
        push_retries: int = 3,
        max_length_legacy: int = 300,
        max_length_json: int = 500,
        seed: int | None = 0,
        flavours: Iterable[str] = ("legacy", "json"),
        products: Mapping[str, str] | None = None,
        product_limits: Mapping[str, Limits | bool] | None = None,
    ) -> None:
        super().__init__(
            accounts,
            balance,
            clock=clock,
            time_window=time_window,
            strict_templates=strict_templates,
            limits=limits,
            blacklist=blacklist,
            sensitive_words=sensitive_words,
            max_length_legacy=max_length_legacy,
            max_length_json=max_length_json,
            products=products,
            product_limits=product_limits,
        )
        self.receipt_url = receipt_url
        self.reply_url = reply_url
        self.template_url = template_url
        self.auto_receipts = auto_receipts
        self.push_transport = push_transport
        self.time_scale = float(time_scale)
        self.push_retries = push_retries
        self.push_retry_step = 60.0
        self.faults = FaultPlan(seed=seed)
        #: The API flavours answered; calls to the other one are unexpected (404).
        self.flavours = frozenset(flavours)
        #: The pushes queued and made (:class:`~ihuyi_async.testing.Outbox`).
        self.outbox = Outbox(self, messages=lambda: self.messages, now=self._now_dt, changed=self.changed)
        #: An ``httpx.AsyncBaseTransport`` calling this emulator directly (no sockets).
        self.transport = _http.EmulatorTransport(self)

    # ------------------------------------------------------------------ hooks of the model

    def _accepted(self, message: SentMessage) -> None:
        if self.auto_receipts:
            self.outbox.queue_receipt(message)

    def _reviewed(self, template: Template) -> None:
        self.outbox.queue_review(
            template.template_id, approved=template.status == "approved", reason=template.reason
        )

    # ------------------------------------------------------------------ checks

    def verify(self) -> None:
        """Fail when the test left loose ends: calls that were not provider calls, or
        faults scheduled for a number of calls that did not happen.

        :raises AssertionError: describing what is left.
        """
        problems = []
        unexpected = self.unexpected
        if unexpected:
            shown = ", ".join(f"{r.http_method} {r.path}" for r in unexpected[:5])
            problems.append(f"{len(unexpected)} unexpected call(s): {shown}")
        unused = self.faults.unused
        if unused:
            shown = ", ".join(f"{e.fault.kind} x{e.remaining}" for e in unused)
            problems.append(f"scheduled faults never used: {shown}")
        if problems:
            raise AssertionError("ihuyi emulator: " + "; ".join(problems))

    def reset(self) -> None:
        """Forget messages, requests, pushes and limit counters (balances and templates stay)."""
        with self._lock:
            self._messages.clear()
            self._requests.clear()
            self._numbers.clear()
        self.outbox.clear()
        self.faults.clear()
        self.changed()

    def fail_next(self, fault: Fault, *, times: int = 1, method: str | None = None) -> None:
        """Act ``fault`` out on the next ``times`` calls (of ``method`` only, if given).

        >>> from ihuyi_async.testing import faults
        >>> Emulator().fail_next(faults.http_error(503), method="Submit")
        """
        self.faults.add(fault, times=times, method=method)
        self.changed()

    # ------------------------------------------------------------------ pushes

    @property
    def pushes(self) -> list[PushRecord]:
        """Every push made so far, oldest first (a snapshot)."""
        return self.outbox.pushes

    @property
    def pending_pushes(self) -> int:
        """Pushes queued and not yet sent."""
        return self.outbox.pending

    async def deliver(
        self, smsid: str | None = None, *, code: int = 2, msg: str = "DELIVRD"
    ) -> list[PushRecord]:
        """Push delivery receipts now: for ``smsid``, or for every message not yet receipted.

        :param code: 2 delivered, anything else failed.
        :param msg: the status text (``DELIVRD``, ``UNDELIV``, …).
        :raises RuntimeError: no ``receipt_url`` configured.
        :raises KeyError: ``smsid`` is not an accepted message.
        """
        return await self.outbox.deliver(smsid, code=code, msg=msg)

    async def reply(self, mobile: str, content: str, *, smsid: str | None = None) -> PushRecord:
        """Push an upstream reply from ``mobile`` now.

        :param smsid: the serial it relates to (default: the last message to that number, or ``"0"``).
        :raises RuntimeError: no reply (or receipt) URL configured.
        """
        return await self.outbox.reply(self._normalize(mobile), content, smsid=smsid)

    async def flush_pushes(self) -> list[PushRecord]:
        """Push everything queued (automatic receipts, template reviews) and wait for the outcome."""
        return await self.outbox.flush()

    def pushing(self) -> AbstractAsyncContextManager[None]:
        """Run a background dispatcher that pushes queued items as they arrive.

        Leaving the block sends what is still queued, then stops the dispatcher.
        """
        return self.outbox.pushing()

    # ------------------------------------------------------------------ HTTP

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The emulator as a pure ASGI 3 application (HTTP and lifespan): the provider's
        paths, and the web inbox on ``/`` and ``/api/…``."""
        await _http.app(self, scope, receive, send)

    def __repr__(self) -> str:
        return (
            f"Emulator(accounts={len(self._accounts)}, messages={len(self._messages)}, "
            f"requests={len(self._requests)}, clock={self.clock!r})"
        )
