"""Guards for an unsigned webhook: secret token, source networks, body size, media type.

Owns :class:`Guards`, built once from the receiver's settings and consulted per
request by the ASGI app and the aiohttp adapter alike. Pure: the caller reads
the request; nothing here does I/O.

The provider signs nothing, so anyone who learns the URL can post to it. The
token makes the URL a secret (compare in constant time); the allow-list limits
who may post at all. ``X-Forwarded-For`` is believed only when the direct peer
is one of ``trusted_proxies``, read from the right, skipping trusted hops.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl

from .._charsets import ascii_compatible_codec

__all__ = ["DEFAULT_MAX_BODY", "FORM_MEDIA_TYPE", "Guards", "NetworkLike"]

#: Default limit of a push body in bytes (64 KiB; real pushes are a few hundred bytes).
DEFAULT_MAX_BODY = 64 * 1024
#: The only media type accepted.
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: What ``allowed_networks`` and ``trusted_proxies`` accept: ``"10.0.0.0/8"``,
#: ``"203.0.113.7"`` or ``ipaddress`` objects.
NetworkLike = str | IPNetwork | IPAddress

_MAX_HOPS = 32


def _network(value: NetworkLike) -> IPNetwork:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return ipaddress.ip_network(value)
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return value
    if isinstance(value, str):
        return ipaddress.ip_network(value.strip(), strict=False)
    raise TypeError(f"expected a network or address, got {type(value).__name__}")


def _address(text: str | None) -> IPAddress | None:
    if text is None:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:8080"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


class Guards:
    """The checks a push must pass before it is parsed.

    :param token: a secret the request must present, as the last path segment or
        as the ``token_param`` query parameter; ``None``: no token.
    :param allowed_networks: networks a push may come from; ``None``: any.
    :param trusted_proxies: proxies whose ``X-Forwarded-For`` is believed.
    :param max_body: the largest body accepted, in bytes.
    :param token_param: the query parameter that may carry the token.
    :raises ValueError: an empty token or allow-list, a bad network, a non-positive limit.
    """

    __slots__ = ("_networks", "_proxies", "_token", "max_body", "token_param")

    def __init__(
        self,
        *,
        token: str | None = None,
        allowed_networks: Iterable[NetworkLike] | None = None,
        trusted_proxies: Iterable[NetworkLike] = (),
        max_body: int = DEFAULT_MAX_BODY,
        token_param: str = "token",
    ) -> None:
        if token is not None and not token:
            raise ValueError("token must be a non-empty string (or None for no token)")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body <= 0:
            raise ValueError("max_body must be a positive number of bytes")
        self._token = token.encode("utf-8") if token is not None else None
        self._networks: tuple[IPNetwork, ...] | None = None
        if allowed_networks is not None:
            if isinstance(allowed_networks, str):
                allowed_networks = [allowed_networks]
            self._networks = tuple(_network(n) for n in allowed_networks)
            if not self._networks:
                raise ValueError("allowed_networks is empty: no push could ever be accepted")
        if isinstance(trusted_proxies, str):
            trusted_proxies = [trusted_proxies]
        self._proxies = tuple(_network(n) for n in trusted_proxies)
        self.max_body = max_body
        self.token_param = token_param

    @property
    def has_token(self) -> bool:
        """Whether a token is required."""
        return self._token is not None

    def token_ok(self, path: str, query_string: str) -> bool:
        """Whether the request presents the token (always ``True`` without one).

        Both places are compared in constant time (``hmac.compare_digest``), and
        both are always compared, so timing does not tell which one was tried.
        """
        expected = self._token
        if expected is None:
            return True
        segment = path.rstrip("/").rsplit("/", 1)[-1]
        presented = ""
        for name, value in parse_qsl(query_string, keep_blank_values=True):
            if name == self.token_param:
                presented = value
                break
        in_path = hmac.compare_digest(segment.encode("utf-8", "surrogatepass"), expected)
        in_query = hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected)
        return in_path or in_query

    def client_address(self, peer: str | None, forwarded_for: Sequence[str]) -> IPAddress | None:
        """The address a push came from: the peer, or, behind trusted proxies, the
        right-most ``X-Forwarded-For`` hop that is not itself a trusted proxy.

        ``None`` when the peer is unknown or a believed hop is not an address.
        """
        address = _address(peer)
        if address is None or not self._proxies or not _within(address, self._proxies):
            return address
        hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
        for hop in reversed(hops[-_MAX_HOPS:]):
            hop_address = _address(hop)
            if hop_address is None:
                return None
            address = hop_address
            if not _within(hop_address, self._proxies):
                return hop_address
        return address

    def source_ok(self, peer: str | None, forwarded_for: Sequence[str]) -> bool:
        """Whether the source is allowed (always ``True`` without an allow-list)."""
        if self._networks is None:
            return True
        address = self.client_address(peer, forwarded_for)
        return address is not None and _within(address, self._networks)

    @staticmethod
    def form_charset(content_type: str | None) -> str | None:
        """The charset of a form body, or ``None`` when the media type is not a form.

        Accepts ``application/x-www-form-urlencoded`` with an optional ``charset``
        parameter (default UTF-8) naming an ASCII-compatible text encoding (UTF-8,
        GBK, GB18030, Big5, Latin-1, ...): a form is ASCII syntax, so a charset
        that reads ``a=1&b=%E4`` otherwise (UTF-16, UTF-7, EBCDIC) cannot carry one.
        Unknown names and codecs that are not text encodings (``base64``,
        ``undefined``) give ``None`` as well, so the receiver answers 415.
        """
        if content_type is None:
            return None
        media, _, params = content_type.partition(";")
        if media.strip().lower() != FORM_MEDIA_TYPE:
            return None
        charset = "utf-8"
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset":
                charset = value.strip().strip('"').lower() or "utf-8"
        return ascii_compatible_codec(charset)

    def __repr__(self) -> str:
        networks = None if self._networks is None else [str(n) for n in self._networks]
        return (
            f"Guards(token={'set' if self._token else None}, allowed_networks={networks}, "
            f"trusted_proxies={[str(n) for n in self._proxies]}, max_body={self.max_body})"
        )
