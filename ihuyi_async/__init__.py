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
    INTERNATIONAL_RULES,
    MARKETING_RULES,
    OPT_OUT,
    VOICE_CODE_RULES,
    VOICE_NOTICE_RULES,
    InternationalSmsClient,
    InvalidVoiceCodeError,
    MarketingChunk,
    MarketingResult,
    MarketingSmsClient,
    ProductOptions,
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
    "INTERNATIONAL_RULES",
    "IdempotencyError",
    "IdempotencyInProgressError",
    "IdempotencyKeyReuseError",
    "IhuyiClient",
    "IhuyiError",
    "InternationalSmsClient",
    "InvalidRequestError",
    "InvalidVoiceCodeError",
    "Journal",
    "JournalEntry",
    "KeyStoreUnavailableError",
    "Kind",
    "LimiterUnavailableError",
    "LocalRateLimitError",
    "MARKETING_RULES",
    "MarketingChunk",
    "MarketingResult",
    "MarketingSmsClient",
    "Message",
    "OPT_OUT",
    "Outcome",
    "ProductOptions",
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
    "VOICE_CODE_RULES",
    "VOICE_NOTICE_RULES",
    "VoiceCodeClient",
    "VoiceNoticeClient",
    "__version__",
    "explain",
    "find_conflicts",
    "lookup",
]

# ProductOptions keeps its home: a TypedDict has no instances (its values are plain dicts),
# so no repr or pickle names it, and the API reference reads its keys from its source.
_publish(__name__, globals(), [name for name in __all__ if name != "ProductOptions"])
