"""The CLI's ``--product``: which client to build, and how its sends are given and shown.

Pure helpers of :mod:`ihuyi_async._cli`: a usage problem raises :class:`ValueError` (the
command turns it into one line and exit code 2); no typer here.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Awaitable, Callable
from typing import Any

from .._china import CHINA_TZ
from .._config import PRODUCTS
from .._exceptions import ApiError
from .._products import (
    InternationalSmsClient,
    MarketingResult,
    MarketingSmsClient,
    VoiceCodeClient,
    VoiceNoticeClient,
    _ProductClient,
)

__all__ = ["PRODUCT_NAMES", "env_prefix", "marketing_report", "parse_at", "product_client", "product_send"]

_CLASSES: dict[str, type[_ProductClient]] = {
    "marketing": MarketingSmsClient,
    "international": InternationalSmsClient,
    "voice-code": VoiceCodeClient,
    "voice-notice": VoiceNoticeClient,
}
#: What ``--product`` takes: ``sms`` (``IhuyiClient``, the default) and the other products.
PRODUCT_NAMES = ("sms", *_CLASSES)


def _check_name(product: str) -> str:
    if product not in PRODUCT_NAMES:
        raise ValueError(f"--product takes {', '.join(PRODUCT_NAMES)}, not {product!r}")
    return product


def env_prefix(product: str) -> str:
    """Where the product's credentials live: ``IHUYI`` or e.g. ``IHUYI_MARKETING``."""
    return "IHUYI" if _check_name(product) == "sms" else PRODUCTS[product].env


def product_client(
    product: str,
    account: str | None,
    api_key: str | None,
    *,
    flavour: str | None,
    base_url: str | None,
    backend: str | None,
    chunk_size: int | None = None,
) -> _ProductClient:
    """The client of ``product`` (not ``sms``), its options checked.

    :raises ValueError: an option the product does not take, or one the client refuses.
    """
    cls = _CLASSES[_check_name(product)]
    if flavour is not None and cls is not VoiceNoticeClient:
        raise ValueError(f"--flavour applies to the SMS product and voice-notice, not {product}")
    if chunk_size is not None and cls is not MarketingSmsClient:
        raise ValueError(f"--chunk-size applies to marketing, not {product}")
    backend_arg: Any = backend  # checked by the client, one line when wrong
    if cls is VoiceNoticeClient:
        if flavour not in (None, "legacy", "json"):
            raise ValueError(f"--flavour takes legacy or json, not {flavour!r}")
        return VoiceNoticeClient(
            account, api_key, flavour="json" if flavour == "json" else "legacy",
            base_url=base_url, backend=backend_arg,
        )
    if cls is MarketingSmsClient and chunk_size is not None:
        return MarketingSmsClient(
            account, api_key, chunk_size=chunk_size, base_url=base_url, backend=backend_arg
        )
    return cls(account, api_key, base_url=base_url, backend=backend_arg)


def parse_at(text: str | None) -> _dt.datetime | None:
    """``--at``: an ISO 8601 time; without an offset it is China time (UTC+8).

    :raises ValueError: not such a time.
    """
    if text is None:
        return None
    try:
        at = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--at takes an ISO time such as '2026-03-01 10:00' (China time) or "
            f"'2026-03-01T02:00+00:00', not {text!r}"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=CHINA_TZ)


def product_send(
    client: _ProductClient,
    mobile: str,
    content: str,
    *,
    template_id: int | None,
    at: _dt.datetime | None,
) -> Callable[[], Awaitable[Any]]:
    """The send of ``client``'s product, as a coroutine function for ``anyio.run``.

    :raises ValueError: an option this product does not take.
    """
    if template_id is not None and client.product != "voice-notice-json":
        raise ValueError("--template-id applies to --product voice-notice --flavour json")
    if at is not None and not isinstance(client, MarketingSmsClient):
        raise ValueError("--at applies to marketing")

    async def go() -> Any:
        async with client:
            if isinstance(client, MarketingSmsClient):
                return await client.send(mobile, content, at=at)
            if isinstance(client, VoiceNoticeClient) and template_id is not None:
                return await client.send_template(
                    mobile, template_id=template_id, variables=content.split("|")
                )
            assert isinstance(client, InternationalSmsClient | VoiceCodeClient | VoiceNoticeClient)
            return await client.send(mobile, content)

    return go


def marketing_report(result: MarketingResult) -> tuple[dict[str, Any], str, int]:
    """``(json, text, exit code)`` of a marketing send: 0 every chunk accepted, 3 a chunk's
    outcome unknown, 1 a chunk refused or not sent."""
    chunks: list[dict[str, Any]] = []
    lines: list[str] = []
    for index, chunk in enumerate(result.chunks):
        error = chunk.error
        code = error.code if isinstance(error, ApiError) else None
        outcome = "accepted" if chunk.accepted else "unknown" if chunk.unknown else "failed"
        chunks.append({"numbers": len(chunk.mobiles), "outcome": outcome, "task_id": chunk.task_id,
                       "error": type(error).__name__ if error else None, "code": code,
                       "message": str(error) if error else None})
        what = f"task_id {chunk.task_id}" if chunk.accepted else f"{type(error).__name__}: {error}"
        lines.append(f"chunk {index + 1} ({len(chunk.mobiles)} numbers): {outcome}: {what}")
    unknown = any(c.unknown for c in result.chunks)
    status = 0 if result.accepted else 3 if unknown else 1
    scheduled = result.scheduled_at.isoformat() if result.scheduled_at else None
    data = {"ok": result.accepted, "chunks": chunks, "scheduled_at": scheduled}
    if scheduled:
        lines.append(f"scheduled for {scheduled}")
    return data, "\n".join(lines), status
