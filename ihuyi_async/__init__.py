"""ihuyi-async: an asyncio client for the ihuyi (互亿无线) SMS API."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._batch import BatchProgress, BatchRun, ConflictPolicy, Message, Outcome, find_conflicts
from ._client import IhuyiClient
from ._clock import Clock, FakeClock, SystemClock
from ._codes import CodeInfo, explain, lookup
from ._config import RetryPolicy
from ._exceptions import (
    AccountError,
    ApiError,
    AuthenticationError,
    BlacklistedError,
    ContentRejectedError,
    DeliveryUnknownError,
    IdempotencyError,
    IdempotencyInProgressError,
    IdempotencyKeyReuseError,
    IhuyiError,
    InvalidRequestError,
    KeyStoreUnavailableError,
    LimiterUnavailableError,
    LocalRateLimitError,
    ProtocolError,
    RateLimitedError,
    StoreUnavailableError,
    TemplateError,
    TransportError,
    UnsupportedOperationError,
)
from ._exports import publish as _publish
from ._journal import Journal, JournalEntry
from ._models import Balance, SendResult, TemplateResult
from ._products import (
    InternationalSmsClient,
    MarketingChunk,
    MarketingResult,
    MarketingSmsClient,
    VoiceCodeClient,
    VoiceNoticeClient,
)
from ._validation import Kind

try:
    __version__ = version("ihuyi-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "AccountError",
    "ApiError",
    "AuthenticationError",
    "Balance",
    "BatchProgress",
    "BatchRun",
    "BlacklistedError",
    "Clock",
    "CodeInfo",
    "ConflictPolicy",
    "ContentRejectedError",
    "DeliveryUnknownError",
    "FakeClock",
    "IdempotencyError",
    "IdempotencyInProgressError",
    "IdempotencyKeyReuseError",
    "IhuyiClient",
    "IhuyiError",
    "InternationalSmsClient",
    "InvalidRequestError",
    "Journal",
    "JournalEntry",
    "KeyStoreUnavailableError",
    "Kind",
    "LimiterUnavailableError",
    "LocalRateLimitError",
    "MarketingChunk",
    "MarketingResult",
    "MarketingSmsClient",
    "Message",
    "Outcome",
    "ProtocolError",
    "RateLimitedError",
    "RetryPolicy",
    "SendResult",
    "StoreUnavailableError",
    "SystemClock",
    "TemplateError",
    "TemplateResult",
    "TransportError",
    "UnsupportedOperationError",
    "VoiceCodeClient",
    "VoiceNoticeClient",
    "__version__",
    "explain",
    "find_conflicts",
    "lookup",
]

_publish(__name__, globals(), __all__)
