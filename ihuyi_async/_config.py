"""Endpoints of each API flavour, defaults, and the retry policy. Pure data.

Two flavours speak the same signing and answer keys (the provider's SMS interface
document v3.3 for the first; the second as recent public integrations call it; README
section "Configuration reference"):

* ``"legacy"``: ``https://106.ihuyi.com/webservice/sms.php?method=Submit|GetNum|AddTemplate``,
  XML or JSON answers (``format=``), content up to 300 characters, no template mode;
* ``"json"``: ``https://api.ihuyi.com/sms/Submit.json`` and ``GetNum.json``, JSON answers,
  content up to 500 characters *(one source)*, template mode with ``templateid``;
  AddTemplate is not documented there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_TIMEOUT", "FLAVOURS", "PRODUCTS", "Flavour", "Product", "RetryPolicy"]

FlavourName = Literal["legacy", "json"]
DEFAULT_TIMEOUT = 10.0
#: Answers are a few hundred bytes; anything past this is not an answer.
MAX_RESPONSE_BYTES = 64 * 1024
#: Seconds an idle pooled connection is kept: below uvicorn's and Apache's 5 s
#: keep-alive (nginx keeps 75 s), so the server is not the one to close first
#: and a request is never written on a connection the server is closing.
DEFAULT_KEEPALIVE_EXPIRY = 4.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Flavour:
    """Where one flavour's methods live and what it allows."""

    name: FlavourName
    default_base_url: str
    submit_path: str
    getnum_path: str
    addtemplate_path: str | None
    max_content: int
    templates: bool
    formats: tuple[str, ...]


FLAVOURS: dict[str, Flavour] = {
    "legacy": Flavour(
        name="legacy",
        default_base_url="https://106.ihuyi.com",
        submit_path="/webservice/sms.php?method=Submit",
        getnum_path="/webservice/sms.php?method=GetNum",
        addtemplate_path="/webservice/sms.php?method=AddTemplate",
        max_content=300,
        templates=False,
        formats=("json", "xml"),
    ),
    "json": Flavour(
        name="json",
        default_base_url="https://api.ihuyi.com",
        submit_path="/sms/Submit.json",
        getnum_path="/sms/GetNum.json",
        addtemplate_path=None,
        max_content=500,
        templates=True,
        formats=("json",),
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    """Where one of the provider's other products lives and what its answer calls the id.

    The endpoints are those public integrations call (yii2-ihuyi's International, Voice
    and Marketing gateways; ihuyi106js for ``isms.php`` and ``ismsid``), signed and
    answered as the provider's SMS interface document (v3.3) describes for ``sms.php``;
    see the README section "The provider's other products".

    :ivar env: prefix of the product's environment variables (``<env>_ACCOUNT``,
        ``<env>_API_KEY``, ``<env>_BASE_URL``).
    :ivar base_url_env: the variable of its base URL, when not ``<env>_BASE_URL``: the
        two voice-notice paths share an account but not a host, so each has its own.
    :ivar send_format: whether ``format=`` is sent (the ``.php`` paths; the ``.json``
        paths answer JSON only).
    """

    name: str
    env: str
    default_base_url: str
    submit_path: str
    getnum_path: str
    id_field: str = "smsid"
    max_content: int = 300
    formats: tuple[str, ...] = ("json", "xml")
    send_format: bool = True
    base_url_env: str = ""

    def base_url_variable(self) -> str:
        """The environment variable holding this product's base URL."""
        return self.base_url_env or f"{self.env}_BASE_URL"


def _webservice(
    name: str, host: str, script: str, *, id_field: str = "smsid", max_content: int = 300
) -> Product:
    """The product ``name`` on ``https://<host>/webservice/<script>?method=Submit|GetNum``,
    its environment variables named ``IHUYI_<NAME>_…``."""
    path = f"/webservice/{script}?method="
    return Product(
        name=name,
        env="IHUYI_" + name.upper().replace("-", "_"),
        default_base_url=f"https://{host}",
        submit_path=path + "Submit",
        getnum_path=path + "GetNum",
        id_field=id_field,
        max_content=max_content,
    )


#: The other products by name, one declaration each; the base URL of each is configurable.
#: The voice code's id field (``smsid``) and the newer voice path's GetNum
#: (``/vm/GetNum.json``) are guesses from the shared answer shape.
PRODUCTS: dict[str, Product] = {
    product.name: product
    for product in (
        _webservice("marketing", "api.yx.ihuyi.com", "sms.php"),
        _webservice("international", "api.isms.ihuyi.com", "isms.php", id_field="ismsid"),
        _webservice("voice-code", "api.voice.ihuyi.com", "voice.php", max_content=6),
        _webservice("voice-notice", "api.vm.ihuyi.com", "voice.php"),
        Product(
            name="voice-notice-json",
            env="IHUYI_VOICE_NOTICE",
            base_url_env="IHUYI_VOICE_NOTICE_JSON_BASE_URL",
            default_base_url="https://api.ihuyi.com",
            submit_path="/vm/Submit.json",
            getnum_path="/vm/GetNum.json",
            id_field="voiceid",
            max_content=500,
            formats=("json",),
            send_format=False,
        ),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When a failed call is tried again.

    * Safe calls (GetNum) are retried on any transport failure, up to
      ``max_attempts`` in all.
    * Sends (Submit, AddTemplate) are retried **only** when the request provably
      never left (connection refused, connect or pool timeout), and only if
      ``retry_unsent_sends``. A send whose outcome is unknown is never retried:
      there is no idempotency key, so a blind retry may bill and deliver twice.

    Backoff is capped exponential with full jitter: ``uniform(0, min(cap, base * 2**n))``.
    """

    max_attempts: int = 3
    backoff: float = 0.2
    max_backoff: float = 2.0
    retry_unsent_sends: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must not be negative")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        cap = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        return random.uniform(0, cap) if cap > 0 else 0.0


#: No retries at all.
NO_RETRIES = RetryPolicy(max_attempts=1, retry_unsent_sends=False)
