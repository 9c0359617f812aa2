"""The provider's result codes: meaning, category, flags, and the exception class each maps to.

Pure data and lookups; no I/O. The registry is open: a code it does not know keeps
its number and the provider's message and maps to plain :class:`ApiError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._exceptions import (
    AccountError,
    ApiError,
    AuthenticationError,
    BlacklistedError,
    ContentRejectedError,
    InvalidRequestError,
    RateLimitedError,
    TemplateError,
)

__all__ = ["ACCOUNT_LEVEL_CODES", "CODES", "CodeInfo", "error_for", "explain", "lookup", "markdown_table"]

SUCCESS = 2
#: Codes by which the provider says a per-number limit was reached.
RATE_LIMIT_CODES = frozenset({408, 4080, 4082, 4085, 4086})
# Codes about the account, not the message (credentials, IP allow-list, frozen, balance,
# clock): every other message of a batch would get the same answer. Marked on CodeInfo.
_ACCOUNT_LEVEL = frozenset({400, 401, 402, 405, 4050, 4051, 4052, 4053, 40501, 40502})


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeInfo:
    """What one result code means.

    :ivar texts: the provider's Chinese text(s), every variant seen.
    :ivar retryable: trying again later (same message, same number) may succeed.
    :ivar permanent_for_recipient: this number will not receive messages until a human acts.
    :ivar account_level: the code concerns the account, not the message (credentials, IP,
        frozen account, balance, clock): a batch stops at the first one.
    """

    code: int
    texts: tuple[str, ...]
    description: str
    category: str
    action: str
    retryable: bool = False
    permanent_for_recipient: bool = False
    account_level: bool = False
    known: bool = True

    @property
    def text(self) -> str:
        """The provider's main (first) text."""
        return self.texts[0] if self.texts else ""

    @property
    def exception_class(self) -> type[ApiError]:
        return _CLASS_BY_CATEGORY.get(self.category, ApiError)


_CLASS_BY_CATEGORY: dict[str, type[ApiError]] = {
    "auth": AuthenticationError,
    "account": AccountError,
    "request": InvalidRequestError,
    "content": ContentRejectedError,
    "template": TemplateError,
    "blacklist": BlacklistedError,
    "rate_limit": RateLimitedError,
}


def _c(
    code: int,
    texts: tuple[str, ...],
    description: str,
    category: str,
    action: str,
    *,
    retryable: bool = False,
    permanent: bool = False,
) -> CodeInfo:
    return CodeInfo(
        code=code,
        texts=texts,
        description=description,
        category=category,
        action=action,
        retryable=retryable,
        permanent_for_recipient=permanent,
        account_level=code in _ACCOUNT_LEVEL,
    )


CODES: dict[int, CodeInfo] = {
    info.code: info
    for info in (
        _c(0, ("提交失败",), "Submission failed.", "server",
           "The provider gave no reason; try again later and contact support if it persists.",
           retryable=True),
        _c(2, ("提交成功", "查询成功"), "Submitted (success).", "success", "Nothing to do."),
        _c(400, ("非法ip访问",), "Access from an IP address that is not allowed.", "auth",
           "Add this host's public IP to the allow-list in the provider's console."),
        _c(401, ("帐号不能为空",), "The account (APIID) is empty.", "auth",
           "Pass account= or set IHUYI_ACCOUNT."),
        _c(402, ("密码不能为空",), "The password is empty.", "auth",
           "Pass api_key= or set IHUYI_API_KEY."),
        _c(403, ("手机号码不能为空",), "The mobile number is empty.", "request",
           "Give a recipient number."),
        _c(4030, ("手机号码已被列入黑名单",), "The mobile number is on the blacklist.", "blacklist",
           "Stop sending to this number; it can only be lifted on the provider's platform.",
           permanent=True),
        _c(404, ("短信内容不能为空",), "The message content is empty.", "request",
           "Give non-blank content."),
        _c(405, ("API ID 或 API KEY 不正确", "用户名或密码不正确"), "The APIID or APIKEY is wrong.",
           "auth", "Check the credentials in the provider's console (product overview)."),
        _c(4050, ("账号被冻结",), "The account is frozen.", "account",
           "Contact the provider to unfreeze the account."),
        _c(40501, ("动态密码已过期",), "The dynamic password has expired.", "auth",
           "Fix this host's clock (the 'time' field is checked against the provider's).",
           retryable=True),
        _c(40502, ("动态密码校验失败",), "The dynamic password check failed.", "auth",
           "Check the APIKEY; the signature covers account, key, mobile, content and time."),
        _c(4051, ("剩余条数不足",), "Not enough messages left (balance).", "account",
           "Top up the account."),
        _c(4052, ("访问 ip 与备案 ip 不符",), "The caller's IP differs from the registered IP.",
           "auth", "Register this host's IP with the provider."),
        _c(4053, ("用户不存在",), "The user (account) does not exist.", "auth",
           "Check the APIID (account=, IHUYI_ACCOUNT) against the provider's console."),
        _c(406, ("手机格式不正确",), "The mobile number format is wrong.", "request",
           "Use an 11-digit mainland number, 1[3-9]xxxxxxxxx.", permanent=True),
        _c(407, ("短信内容含有敏感字符",), "The content contains sensitive words.", "content",
           "Reword the message."),
        _c(4070, ("签名格式不正确",), "The signature format is wrong.", "template",
           "Use an approved signature such as 【互亿无线】 (2-30 characters in brackets)."),
        _c(4071, ("签名格式不正确", "没有提交备案模板"),
           "No registered template was submitted (also seen: signature format wrong).", "template",
           "Register the template (add_template) and wait for approval."),
        _c(4072, ("签名格式不正确", "提交的短信内容与审核通过的模板内容不匹配", "短信内容与备案模板不一致"),
           "The content does not match an approved template (also seen: signature format wrong).",
           "template", "Send exactly an approved template's text with its variables filled in."),
        _c(40722, ("变量内容超过指定的长度【8】",), "A template variable is longer than allowed (8).",
           "template", "Shorten the variable."),
        _c(4073, ("短信内容超出长度限制",), "The content exceeds the length limit.", "content",
           "Shorten the message (300 characters on the legacy API, 500 on the JSON API)."),
        _c(4074, ("短信内容包含 emoji 符号",), "The content contains emoji.", "content",
           "Remove emoji and other characters outside the Basic Multilingual Plane."),
        _c(4075, ("签名未通过审核",), "The signature was not approved.", "template",
           "Use an approved signature."),
        _c(408, ("发送超限([20]条),已加入黑名单,可登入平台解除", "您的帐户疑被恶意利用,已被自动冻结"),
           "Over the sending limit (20); the number was blacklisted (older text: account frozen as abused).",
           "rate_limit", "Lift the block on the provider's platform; review what sent so much.",
           permanent=True),
        _c(4080, ("同一手机号码同一秒钟之内发送频率不能超过 1 条",),
           "The same number may receive at most 1 message per second.", "rate_limit",
           "Wait a second and send again.", retryable=True),
        _c(4082, ("超出同一手机号一天之内【5】条短信限制",),
           "The same number may receive at most 5 messages per day.", "rate_limit",
           "Wait until 00:00 China time (UTC+8).", retryable=True),
        _c(4085, ("同一手机号验证码短信发送超出【5】条",),
           "The same number may receive at most 5 verification-code messages per day.",
           "rate_limit", "Wait until 00:00 China time (UTC+8).", retryable=True),
        _c(4086, (),
           "Too many operations on this mobile number (seen in one integration).", "rate_limit",
           "Slow down sends to this number.", retryable=True),
    )
}


#: Codes the registry marks ``account_level``: ``send_many`` stops at the first by default.
ACCOUNT_LEVEL_CODES = frozenset(code for code, info in CODES.items() if info.account_level)


def lookup(code: int) -> CodeInfo:
    """The registry entry for ``code``; an unknown code gets a generic entry keeping its number."""
    info = CODES.get(code)
    if info is not None:
        return info
    return CodeInfo(
        code=code,
        texts=(),
        description="A code this library does not know.",
        category="unknown",
        action="Check the provider's current documentation or contact support.",
        known=False,
    )


def error_for(code: int, message: str = "", *, local: bool = False, mobile: str = "") -> ApiError:
    """Build the exception the registry assigns to ``code`` (message defaults to the registry's)."""
    info = lookup(code)
    return info.exception_class(
        code,
        message or info.text or info.description,
        category=info.category,
        local=local,
        mobile=mobile,
        retryable=info.retryable,
    )


def explain(code: int | str) -> str:
    """Tell a user what a result code means and what to do about it.

    >>> print(explain(4082).splitlines()[0])
    4082 [rate_limit] The same number may receive at most 5 messages per day.
    """
    number = int(code)
    info = lookup(number)
    lines = [f"{number} [{info.category}] {info.description}"]
    if info.texts:
        lines.append("provider text: " + " / ".join(info.texts))
    lines.append(f"what to do: {info.action}")
    flags = []
    if info.retryable:
        flags.append("retryable later")
    if info.permanent_for_recipient:
        flags.append("permanent for this recipient")
    if info.account_level:
        flags.append("concerns the account: a batch stops at the first")
    if info.known:
        lines.append("exception: " + info.exception_class.__name__ + (f" ({', '.join(flags)})" if flags else ""))
    return "\n".join(lines)


def markdown_table() -> str:
    """The registry as a Markdown table (the README's error-handling table is this output)."""
    rows = [
        "| code | exception | category | meaning | what to do |",
        "|---:|---|---|---|---|",
    ]
    for code in sorted(CODES):
        info = CODES[code]
        name = "—" if code == SUCCESS else info.exception_class.__name__
        flags = []
        if info.retryable:
            flags.append("retryable")
        if info.permanent_for_recipient:
            flags.append("permanent for the number")
        meaning = info.description + (f" ({', '.join(flags)})" if flags else "")
        rows.append(f"| {code} | {name} | {info.category} | {meaning} | {info.action} |")
    return "\n".join(rows)
