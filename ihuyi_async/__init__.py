"""ihuyi-async: an asyncio client for the ihuyi (互亿无线) SMS API."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._clock import Clock, FakeClock, SystemClock
from ._codes import CodeInfo, explain, lookup
from ._exceptions import (
    AccountError,
    ApiError,
    AuthenticationError,
    BlacklistedError,
    ContentRejectedError,
    DeliveryUnknownError,
    IhuyiError,
    InvalidRequestError,
    LimiterUnavailableError,
    LocalRateLimitError,
    ProtocolError,
    RateLimitedError,
    TemplateError,
    TransportError,
    UnsupportedOperationError,
)

try:
    __version__ = version("ihuyi-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "AccountError",
    "ApiError",
    "AuthenticationError",
    "BlacklistedError",
    "Clock",
    "CodeInfo",
    "ContentRejectedError",
    "DeliveryUnknownError",
    "FakeClock",
    "IhuyiError",
    "InvalidRequestError",
    "LimiterUnavailableError",
    "LocalRateLimitError",
    "ProtocolError",
    "RateLimitedError",
    "SystemClock",
    "TemplateError",
    "TransportError",
    "UnsupportedOperationError",
    "__version__",
    "explain",
    "lookup",
]
