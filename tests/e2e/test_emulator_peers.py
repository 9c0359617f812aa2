"""The emulator against the bytes real clients in other languages send (#14).

Each test writes, on a raw loopback socket, what one published client puts on the wire
(the vendor's demos, PHP curl given an array, curl with a pasted GET URL), byte for
byte, and checks the emulator answers what the provider would and records the call.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
from collections.abc import Iterator
from urllib.parse import quote_from_bytes

import pytest

from ihuyi_async import FakeClock
from ihuyi_async.testing import Emulator, EmulatorServer

ACCOUNT, KEY = "C12345678", "0123456789abcdef0123456789abcdef"
MOBILE = "13800138000"
TRIAL = "您的验证码是：4821。请不要把验证码泄露给其他人。"
START = 1767240000.0
PATH = "/webservice/sms.php"


@pytest.fixture
def served() -> Iterator[tuple[Emulator, EmulatorServer]]:
    emulator = Emulator({ACCOUNT: KEY}, 100, clock=FakeClock(START, auto_advance=True))
    with EmulatorServer(emulator) as server:
        yield emulator, server


class Raw:
    """One raw TCP connection speaking whatever bytes a test gives it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.pending = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.pending += chunk
        return bool(chunk)

    def response(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """Read exactly one HTTP response (Content-Length or to the end) off the connection."""
        for _ in range(1000):
            if b"\r\n\r\n" in self.pending:
                break
            assert self._fill(), "connection closed before an answer"
        head, _, rest = self.pending.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if head_only:
            self.pending = rest
            return status, headers, b""
        if "content-length" in headers:
            size = int(headers["content-length"])
            for _ in range(1000):
                if len(rest) >= size:
                    break
                self.pending = head + b"\r\n\r\n" + rest
                assert self._fill()
                rest = self.pending.partition(b"\r\n\r\n")[2]
            body, self.pending = rest[:size], rest[size:]
            return status, headers, body
        body, self.pending = rest, b""
        for _ in range(1000):
            if not self._fill():
                break
        return status, headers, body + self.pending

    def close(self) -> None:
        self.sock.close()


def code_of(body: bytes) -> int:
    text = body.decode("utf-8")
    return int(text.split("<code>")[1].split("</code>")[0])


def exchange(port: int, data: bytes, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    raw = Raw(port)
    try:
        raw.send(data)
        return raw.response(head_only=head_only)
    finally:
        raw.close()


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def post(target: str, body: bytes, content_type: str, *, extra: str = "") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: 106.ihuyi.com\r\n{extra}"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1") + body


def php_curl_multipart(fields: dict[str, str], boundary: str = "------------------------d74496d66958873e") -> tuple[bytes, str]:
    """What PHP's curl sends for ``CURLOPT_POSTFIELDS => array(...)`` (yii2-ihuyi)."""
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode("utf-8") + b"\r\n"
        for name, value in fields.items()
    ) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# --------------------------------------------------------------------------- 1. multipart and query


def test_php_curl_multipart_submit_getnum_and_addtemplate(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    body, ctype = php_curl_multipart(
        {"account": ACCOUNT, "password": KEY, "mobile": MOBILE, "content": TRIAL}
    )
    status, _, answer = exchange(server.port, post(PATH + "?method=Submit", body, ctype, extra="Accept: */*\r\n"))
    assert (status, code_of(answer)) == (200, 2)
    assert emulator.messages[0].content == TRIAL
    body, ctype = php_curl_multipart({"account": ACCOUNT, "password": md5(KEY)})
    _, _, answer = exchange(server.port, post(PATH + "?method=GetNum", body, ctype))
    assert code_of(answer) == 2 and b"<num>99</num>" in answer
    body, ctype = php_curl_multipart(
        {"account": ACCOUNT, "password": md5(KEY), "content": "您的订单【变量】已发货"}
    )
    _, _, answer = exchange(server.port, post(PATH + "?method=AddTemplate", body, ctype))
    assert code_of(answer) == 2
    assert [r.code for r in emulator.requests] == [2, 2, 2] and emulator.unexpected == []


def test_multipart_part_charset_and_format_in_the_query(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    boundary = "XyZ"
    parts = [("account", ACCOUNT.encode()), ("password", KEY.encode()), ("mobile", MOBILE.encode())]
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n'.encode() + v + b"\r\n"
        for n, v in parts
    )
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"\r\n'
        "Content-Type: text/plain; charset=GBK\r\n\r\n"
    ).encode() + TRIAL.encode("gbk") + f"\r\n--{boundary}--\r\n".encode()
    status, _, answer = exchange(
        server.port,
        post(PATH + "?method=Submit&format=json", body, f'multipart/form-data; boundary="{boundary}"'),
    )
    assert status == 200 and answer.startswith(b'{"code":2,')
    assert emulator.messages[0].content == TRIAL


def test_get_with_every_field_in_the_query_string(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    query = f"method=Submit&account={ACCOUNT}&password={KEY}&mobile={MOBILE}&content=" + quote_from_bytes(
        TRIAL.encode()
    )
    _, _, answer = exchange(server.port, f"GET {PATH}?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert code_of(answer) == 2 and emulator.messages[0].content == TRIAL


# --------------------------------------------------------------------------- 2. charsets


def java_gbk_form(fields: dict[str, str]) -> bytes:
    """The vendor's Java demo: ``URLEncoder.encode(value, "GBK")`` joined with ``&``."""
    return "&".join(f"{k}={quote_from_bytes(v.encode('gbk'))}" for k, v in fields.items()).encode()


def test_java_demo_gbk_body_with_a_declared_charset(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    body = java_gbk_form({"account": ACCOUNT, "password": KEY, "mobile": MOBILE, "content": TRIAL})
    _, _, answer = exchange(
        server.port,
        post(PATH + "?method=Submit", body, "application/x-www-form-urlencoded;charset=GBK"),
    )
    assert code_of(answer) == 2
    assert emulator.messages[0].content == TRIAL
    assert emulator.last_code_for(MOBILE) == "4821"
    assert emulator.requests[0].charset == "gb18030"


def test_jsp_demo_undeclared_gbk_body_reads_as_gb18030(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    body = java_gbk_form({"account": ACCOUNT, "password": KEY, "mobile": MOBILE, "content": TRIAL})
    _, _, answer = exchange(server.port, post(PATH + "?method=Submit", body, "application/x-www-form-urlencoded"))
    assert code_of(answer) == 2 and emulator.messages[0].content == TRIAL


def test_gbk_dynamic_password_over_gbk_bytes_is_accepted(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    ts = str(int(START))
    raw = (ACCOUNT + KEY + MOBILE + TRIAL + ts).encode("gbk")
    fields = {"account": ACCOUNT, "password": hashlib.md5(raw).hexdigest(), "mobile": MOBILE,
              "content": TRIAL, "time": ts}
    _, _, answer = exchange(
        server.port,
        post(PATH + "?method=Submit", java_gbk_form(fields), "application/x-www-form-urlencoded; charset=gbk"),
    )
    assert code_of(answer) == 2


def test_bytes_valid_in_no_charset_are_refused_with_0_never_garbled(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    body = f"account={ACCOUNT}&password={KEY}&mobile={MOBILE}&content=%FF%FF%FF1234".encode()
    _, _, answer = exchange(server.port, post(PATH + "?method=Submit", body, "application/x-www-form-urlencoded"))
    assert code_of(answer) == 0
    assert emulator.messages == [] and emulator.balance_of() == 100
    assert emulator.requests[0].code == 0


# --------------------------------------------------------------------------- 3. upper-case MD5


def test_java_md5encode_upper_case_hex_is_accepted_everywhere(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    upper = md5(KEY).upper()
    form = f"account={ACCOUNT}&password={upper}&mobile={MOBILE}&content={quote_from_bytes(TRIAL.encode())}"
    ctype = "application/x-www-form-urlencoded"
    for method, body in (("Submit", form), ("GetNum", f"account={ACCOUNT}&password={upper}"),
                         ("AddTemplate", f"account={ACCOUNT}&password={upper}&content=%E5%A5%BD%E3%80%90%E5%8F%98%E9%87%8F%E3%80%91")):
        _, _, answer = exchange(server.port, post(f"{PATH}?method={method}", body.encode(), ctype))
        assert code_of(answer) == 2, method
    ts = str(int(START))
    dynamic = md5(ACCOUNT + KEY + ts).upper()
    _, _, answer = exchange(server.port, post(
        PATH + "?method=GetNum", f"account={ACCOUNT}&password={dynamic}&time={ts}".encode(), ctype))
    assert code_of(answer) == 2


# --------------------------------------------------------------------------- 4. code 4053


def test_unknown_account_is_4053_and_a_wrong_key_405(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    ctype = "application/x-www-form-urlencoded"
    for method in ("Submit", "GetNum", "AddTemplate"):
        _, _, answer = exchange(server.port, post(
            f"{PATH}?method={method}", f"account=C00000000&password={KEY}&mobile={MOBILE}&content=hi".encode(), ctype))
        assert code_of(answer) == 4053, method
        assert "用户不存在".encode() in answer
        _, _, answer = exchange(server.port, post(
            f"{PATH}?method={method}", f"account={ACCOUNT}&password=wrong&mobile={MOBILE}&content=hi".encode(), ctype))
        assert code_of(answer) == 405, method


# --------------------------------------------------------------------------- 5. a tolerant server


def test_raw_utf8_in_the_request_line_is_answered_and_recorded(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    line = f"GET {PATH}?method=Submit&account={ACCOUNT}&password={KEY}&mobile={MOBILE}&content={TRIAL} HTTP/1.1\r\n"
    status, _, answer = exchange(server.port, line.encode("utf-8") + b"Host: 106.ihuyi.com\r\nUser-Agent: curl/7.88.1\r\n\r\n")
    assert (status, code_of(answer)) == (200, 2)
    assert emulator.messages[0].content == TRIAL
    assert len(emulator.requests) == 1 and emulator.unexpected == []


def test_c_demo_crlf_crlf_after_the_body_gets_no_second_answer(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    body = f"account={ACCOUNT}&password={KEY}&mobile={MOBILE}&content={quote_from_bytes(TRIAL.encode())}".encode()
    raw = Raw(server.port)
    try:
        # Leading empty lines too (RFC 9112 2.2: a server SHOULD ignore them).
        raw.send(b"\r\n" + post(PATH + "?method=Submit", body, "application/x-www-form-urlencoded") + b"\r\n\r\n")
        first = raw.response()
        raw.send(post(PATH + "?method=GetNum", f"account={ACCOUNT}&password={KEY}".encode(),
                      "application/x-www-form-urlencoded"))
        second = raw.response()
    finally:
        raw.close()
    assert (first[0], code_of(first[2])) == (200, 2)
    assert (second[0], code_of(second[2])) == (200, 2)  # not a 400 for the stray CRLFs
    assert [r.method for r in emulator.requests] == ["Submit", "GetNum"]


def test_bare_lf_http10_and_chunked_bodies(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    body = f"account={ACCOUNT}&password={KEY}".encode()
    http10 = (f"POST {PATH}?method=GetNum HTTP/1.0\nContent-Type: application/x-www-form-urlencoded\n"
              f"Content-Length: {len(body)}\n\n").encode() + body
    status, headers, answer = exchange(server.port, http10)
    assert (status, code_of(answer)) == (200, 2)
    chunked = (f"POST {PATH}?method=GetNum HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               "Content-Type: application/x-www-form-urlencoded\r\n\r\n").encode()
    chunked += f"{len(body[:7]):x}\r\n".encode() + body[:7] + b"\r\n"
    chunked += f"{len(body[7:]):x};ext=1\r\n".encode() + body[7:] + b"\r\n0\r\n\r\n"
    status, _, answer = exchange(server.port, chunked)
    assert (status, code_of(answer)) == (200, 2)
    status, headers, answer = exchange(server.port, f"HEAD {PATH}?method=GetNum HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), head_only=True)
    # The server writes a HEAD answer's head only; the emulator is no provider method for HEAD.
    assert status == 405 and answer == b"" and int(headers["content-length"]) > 0
    assert len(emulator.requests) == 3 and [r.http_method for r in emulator.unexpected] == ["HEAD"]


def test_curl_expect_100_continue_gets_an_interim_answer(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    body, ctype = php_curl_multipart(
        {"account": ACCOUNT, "password": KEY, "mobile": MOBILE, "content": TRIAL + "x" * 1100}
    )
    head = post(PATH + "?method=Submit", b"", ctype, extra="Expect: 100-continue\r\n")
    head = head.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode())
    raw = Raw(server.port)
    try:
        raw.send(head)
        interim = raw.response(head_only=True)
        raw.send(body)
        final = raw.response()
    finally:
        raw.close()
    assert interim[0] == 100
    assert (final[0], code_of(final[2])) == (200, 4073)  # over 300 characters, but read and answered


def test_a_request_the_server_cannot_read_is_recorded_as_unexpected(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    status, _, _ = exchange(server.port, f"POST {PATH}?method=Submit HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".encode())
    assert status == 400
    [recorded] = emulator.requests
    assert recorded.method is None and recorded.status == 400 and recorded.path == PATH
    with pytest.raises(AssertionError, match="unexpected"):
        emulator.verify()



# --------------------------------------------------------------------------- the real curl


def curl(*args: str) -> str:
    done = subprocess.run(["curl", "-s", "-S", "--max-time", "10", *args], capture_output=True, timeout=20, check=True)
    return done.stdout.decode("utf-8")


def test_real_curl_pasted_get_multipart_and_gbk(served: tuple[Emulator, EmulatorServer]) -> None:
    """curl (libcurl, what PHP's curl is) as users run it: the seed page's GET URL pasted
    with raw Chinese, ``-F`` fields (multipart, as PHP curl given an array), a GBK body."""
    emulator, server = served
    base = server.url + PATH
    pasted = f"{base}?method=Submit&account={ACCOUNT}&password={KEY}&mobile={MOBILE}&content={TRIAL}"
    assert "<code>2</code>" in curl(pasted)
    fields = {"account": ACCOUNT, "password": md5(KEY).upper(), "mobile": "13900139000", "content": TRIAL}
    form = [arg for name, value in fields.items() for arg in ("-F", f"{name}={value}")]
    assert "<code>2</code>" in curl(*form, base + "?method=Submit")
    gbk = java_gbk_form({**fields, "mobile": "13700137000"})
    done = subprocess.run(
        ["curl", "-s", "-S", "--max-time", "10", "--data-binary", "@-", "-H",
         "Content-Type: application/x-www-form-urlencoded; charset=GBK", base + "?method=Submit&format=json"],
        input=gbk, capture_output=True, timeout=20, check=True,
    )
    assert done.stdout.startswith(b'{"code":2,')
    assert [m.content for m in emulator.messages] == [TRIAL] * 3
    assert emulator.unexpected == []
