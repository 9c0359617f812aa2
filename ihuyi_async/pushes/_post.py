"""Provider-shaped pushes for tests: form builders and a poster.

Owns :func:`receipt_form`, :func:`reply_form`, :func:`template_review_form`,
:func:`post_push` and :class:`PushAnswer`. Depends on httpx only, so the
emulator (and users' own tests) can reuse them. The forms carry the field names
of the provider's push documents (see ``parse_push``); the poster sends them as
the provider does: POST, ``application/x-www-form-urlencoded``, UTF-8.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import httpx

from ._models import CHINA_TZ

__all__ = ["PushAnswer", "post_push", "receipt_form", "reply_form", "template_review_form"]

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds: once per process, not per post.
    return ssl.create_default_context()


def _time_text(value: datetime | str | None) -> str:
    if value is None:
        value = datetime.now(CHINA_TZ)
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(CHINA_TZ)
    return value.strftime(_TIME_FORMAT)


def receipt_form(
    *,
    smsid: str | None = None,
    task_id: str | None = None,
    mobile: str = "13800138000",
    code: int | str = 2,
    msg: str | None = None,
    report_time: datetime | str | None = None,
) -> dict[str, str]:
    """A delivery receipt as the provider posts it.

    :param smsid: the Submit serial (ordinary sends).
    :param task_id: the marketing send's serial (instead of ``smsid``).
    :param mobile: the recipient (``mobilephone``).
    :param code: ``2`` delivered, anything else failed.
    :param msg: status text (default ``DELIVRD`` for code 2, else ``UNDELIV``).
    :param report_time: a datetime (aware ones are converted to UTC+8), a string
        sent verbatim, or ``None`` for now; formatted ``YYYY-MM-DD HH:MM:SS``.
    :raises ValueError: not exactly one of ``smsid`` and ``task_id``.

    .. versionadded:: 0.1.0
    """
    if (smsid is None) == (task_id is None):
        raise ValueError("give exactly one of smsid (ordinary sends) and task_id (marketing)")
    form = {"code": str(code)}
    form["msg"] = msg if msg is not None else ("DELIVRD" if str(code) == "2" else "UNDELIV")
    form["mobilephone"] = mobile
    if smsid is not None:
        form["smsid"] = smsid
    else:
        form["task_id"] = str(task_id)
    form["report_time"] = _time_text(report_time)
    return form


def reply_form(
    *,
    mobile: str = "13800138000",
    content: str = "收到，谢谢",
    smsid: str | None = None,
    reply_time: datetime | str | None = None,
    time_field: str = "reply_time",
) -> dict[str, str]:
    """An upstream reply as the provider posts it.

    :param mobile: who replied (``mobilephone``).
    :param content: what they wrote.
    :param smsid: the Submit serial it relates to (omitted when ``None``).
    :param reply_time: as ``report_time`` of :func:`receipt_form`.
    :param time_field: ``reply_time`` or ``replyTime`` (both are seen).

    .. versionadded:: 0.1.0
    """
    form = {"mobilephone": mobile, "content": content}
    if smsid is not None:
        form["smsid"] = smsid
    form[time_field] = _time_text(reply_time)
    return form


def template_review_form(
    *, template_id: int | str, code: int | str = 2, msg: str = "审核通过"
) -> dict[str, str]:
    """A template review result as the provider posts it (fields unverified).

    :param template_id: the id AddTemplate returned (``templateid``).
    :param code: ``2`` approved, ``0`` rejected.
    :param msg: the reviewer's reason.

    .. versionadded:: 0.1.0
    """
    return {"templateid": str(template_id), "code": str(code), "msg": msg}


@dataclass(frozen=True, slots=True, kw_only=True)
class PushAnswer:
    """What a receiver answered to a push.

    :ivar status_code: the HTTP status.
    :ivar body: the body, decoded as UTF-8 (undecodable bytes replaced).

    .. versionadded:: 0.1.0
    """

    status_code: int
    body: str

    @property
    def acknowledged(self) -> bool:
        """Whether the provider would count the push as delivered: 200 and exactly ``success``."""
        return self.status_code == 200 and self.body == "success"


async def post_push(
    target: str | httpx.AsyncClient,
    form: Mapping[str, str],
    *,
    url: str = "",
    encoding: str = "utf-8",
    content_type: str = "application/x-www-form-urlencoded",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> PushAnswer:
    """POST ``form`` to a receiver the way the provider does, and return its answer.

    :param target: the receiver's full URL, or an ``httpx.AsyncClient`` (e.g. one
        with an ``ASGITransport`` and a ``base_url``), which stays yours.
    :param form: the fields, e.g. from :func:`receipt_form`.
    :param url: with a client, the URL or path to post to (default: its ``base_url``).
    :param encoding: the body's encoding (the provider uses UTF-8).
    :param content_type: the ``Content-Type`` header sent.
    :param headers: extra headers (e.g. ``X-Forwarded-For``).
    :param timeout: seconds for the whole exchange (a URL ``target`` only).
    :raises httpx.HTTPError: the request could not be made.

    .. versionadded:: 0.1.0
    """
    body = urlencode(list(form.items()), encoding=encoding).encode("ascii")
    request_headers = {"Content-Type": content_type, **(headers or {})}
    if isinstance(target, httpx.AsyncClient):
        response = await target.post(url, content=body, headers=request_headers)
    else:
        async with httpx.AsyncClient(
            timeout=timeout, trust_env=False, verify=_ssl_context()
        ) as client:
            response = await client.post(target + url, content=body, headers=request_headers)
    return PushAnswer(
        status_code=response.status_code,
        body=response.content.decode("utf-8", "replace"),
    )
