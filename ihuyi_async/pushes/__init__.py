"""Receive the provider's pushes: delivery receipts, replies and template reviews.

:class:`PushReceiver` is a plain ASGI app (mount it in FastAPI, Starlette or any
ASGI framework); :func:`aiohttp_app` and :func:`aiohttp_handler` serve it from
aiohttp. It answers the literal ``success`` only after your handler returned,
handles each item once within a window (:class:`MemoryDedupe`, or
:class:`RedisDedupe` shared by several workers), and guards the unsigned
endpoint with a secret token, a source allow-list and a body size limit.
To post provider-shaped pushes in tests, see :mod:`ihuyi_async.testing`
(:func:`~ihuyi_async.testing.receipt_form`, :func:`~ihuyi_async.testing.post_push`, ...).

This package stands alone: it does not import the client.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from .._exports import publish as _publish
from ._aiohttp import aiohttp_app, aiohttp_handler
from ._dedupe import ClaimState, DedupeStore, MemoryDedupe, RedisDedupe
from ._guards import DEFAULT_MAX_BODY, NetworkLike
from ._models import (
    CHINA_TZ,
    DEFAULT_TIME_FORMATS,
    DeliveryReceipt,
    Push,
    PushParseError,
    Reply,
    TemplateReview,
    parse_push,
)
from ._receiver import (
    PushReceiver,
    PushStatistics,
    ReceiptHandler,
    ReplyHandler,
    TemplateReviewHandler,
)

__all__ = [
    "CHINA_TZ",
    "ClaimState",
    "DEFAULT_MAX_BODY",
    "DEFAULT_TIME_FORMATS",
    "DedupeStore",
    "DeliveryReceipt",
    "MemoryDedupe",
    "NetworkLike",
    "Push",
    "PushParseError",
    "PushReceiver",
    "PushStatistics",
    "ReceiptHandler",
    "RedisDedupe",
    "Reply",
    "ReplyHandler",
    "TemplateReview",
    "TemplateReviewHandler",
    "aiohttp_app",
    "aiohttp_handler",
    "parse_push",
]

_publish(__name__, globals(), __all__)

_MOVED = frozenset({"PushAnswer", "post_push", "receipt_form", "reply_form", "template_review_form"})


def __getattr__(name: str) -> object:
    # Deprecated in 0.2.0: the test-only push builders live in ihuyi_async.testing (#14).
    if name in _MOVED:
        import warnings

        from .. import testing

        warnings.warn(
            f"ihuyi_async.pushes.{name} moved to ihuyi_async.testing.{name}; "
            "the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(testing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
