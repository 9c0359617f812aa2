"""The live web inbox (placeholder until the inbox lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..pushes._asgi import Receive, Scope, Send

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["handle"]


async def handle(emulator: Emulator, scope: Scope, receive: Receive, send: Send) -> bool:
    return False
