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

The library itself never imports this package.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from .._clock import FakeClock
from . import _faults as faults
from ._emulator import (
    CHINA_TZ,
    DEFAULT_ACCOUNTS,
    Emulator,
    EmulatorTransport,
    Limits,
    Message,
    RecordedRequest,
    Template,
    is_verification,
)
from ._faults import Fault, FaultPlan
from ._pushes import PushRecord
from ._respx import mock_ihuyi, respx_side_effect
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
    "Message",
    "PushRecord",
    "RecordedRequest",
    "Template",
    "faults",
    "is_verification",
    "mock_ihuyi",
    "respx_side_effect",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _name, _obj
