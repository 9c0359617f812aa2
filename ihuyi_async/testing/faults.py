"""Faults the emulator can act out on a call: ``emulator.fail_next(faults.disconnect())``.

Each constructor builds one :class:`~ihuyi_async.testing.Fault`; the emulator's
:class:`~ihuyi_async.testing.FaultPlan` (``emulator.faults``) schedules them for a number of
calls, with a probability, or both::

    from ihuyi_async.testing import faults

    emulator.fail_next(faults.disconnect())      # accepted and billed, but the answer is lost
    emulator.faults.add(faults.http_error(503), times=None, probability=0.1, method="Submit")

.. versionadded:: 0.1.0
"""

from __future__ import annotations

# Fault and FaultPlan stay importable from here too; they are documented in ihuyi_async.testing.
from ._faults import Fault as Fault
from ._faults import FaultKind, ScheduledFault, disconnect, garbage, hang, http_error, latency
from ._faults import FaultPlan as FaultPlan

__all__ = ["FaultKind", "ScheduledFault", "disconnect", "garbage", "hang", "http_error", "latency"]
