"""Test doubles for ihuyi-async: an emulator of the provider, fault injection, a
loopback server, respx integration and a pytest plugin.

The emulator behaves like the ihuyi service (signatures, validations, per-number
limits, balances, templates, pushes) so an application's tests exercise the real
client against something that answers as the provider would, with no network
and no credentials::

    from ihuyi_async import IhuyiClient
    from ihuyi_async.testing import Emulator

    emulator = Emulator(accounts={"APIID": "APIKEY"}, balance=1000)
    client = IhuyiClient("APIID", "APIKEY", transport=emulator.transport, clock=emulator.clock)

The push builders (:func:`receipt_form`, :func:`reply_form`, :func:`template_review_form`,
:func:`post_push`, :class:`PushAnswer`) live here since 0.2.0; the old names in
:mod:`ihuyi_async.pushes` stay for one release. The library itself never imports this package.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import warnings
from typing import Any

from .._clock import FakeClock
from .._exports import publish as _publish
from . import faults
from ._emulator import Emulator
from ._faults import Fault, FaultPlan
from ._http import EmulatorTransport
from ._model import CHINA_TZ, DEFAULT_ACCOUNTS, Limits, RecordedRequest, SentMessage, Template
from ._outbox import (
    Outbox,
    PushAnswer,
    PushRecord,
    post_push,
    receipt_form,
    reply_form,
    template_review_form,
)
from ._respx import mock_ihuyi, respx_side_effect
from ._rules import is_verification
from ._server import EmulatorServer

__all__ = [
    "CHINA_TZ",
    "DEFAULT_ACCOUNTS",
    "Emulator",
    "EmulatorServer",
    "EmulatorTransport",
    "FakeClock",
    "Fault",
    "FaultPlan",
    "Limits",
    "Outbox",
    "PushAnswer",
    "PushRecord",
    "RecordedRequest",
    "SentMessage",
    "Template",
    "faults",
    "is_verification",
    "mock_ihuyi",
    "post_push",
    "receipt_form",
    "reply_form",
    "respx_side_effect",
    "template_review_form",
]

_publish(__name__, globals(), __all__)


def __getattr__(name: str) -> Any:
    if name == "Message":
        warnings.warn(
            "ihuyi_async.testing.Message is renamed SentMessage (it is not the batch "
            "ihuyi_async.Message); the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return SentMessage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
