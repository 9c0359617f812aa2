import pytest

import ihuyi_async as ih
from ihuyi_async._codes import CODES, RATE_LIMIT_CODES, error_for, lookup

EXPECTED = {
    0: ih.ApiError, 400: ih.AuthenticationError, 401: ih.AuthenticationError,
    402: ih.AuthenticationError, 403: ih.InvalidRequestError, 4030: ih.BlacklistedError,
    404: ih.InvalidRequestError, 405: ih.AuthenticationError, 4050: ih.AccountError,
    40501: ih.AuthenticationError, 40502: ih.AuthenticationError, 4051: ih.AccountError,
    4052: ih.AuthenticationError, 4053: ih.AuthenticationError, 406: ih.InvalidRequestError, 407: ih.ContentRejectedError,
    4070: ih.TemplateError, 4071: ih.TemplateError, 4072: ih.TemplateError,
    40722: ih.TemplateError, 4073: ih.ContentRejectedError, 4074: ih.ContentRejectedError,
    4075: ih.TemplateError, 408: ih.RateLimitedError, 4080: ih.RateLimitedError,
    4082: ih.RateLimitedError, 4085: ih.RateLimitedError, 4086: ih.RateLimitedError,
}


def test_registry_covers_every_documented_code() -> None:
    assert set(CODES) == set(EXPECTED) | {2}


@pytest.mark.parametrize(("code", "cls"), sorted(EXPECTED.items()))
def test_code_maps_to_class_with_code_and_message(code: int, cls: type[ih.ApiError]) -> None:
    err = error_for(code, "provider says so")
    assert type(err) is cls
    assert isinstance(err, ih.ApiError) and isinstance(err, ih.IhuyiError)
    assert err.code == code and err.message == "provider says so"
    assert str(code) in str(err)


def test_rate_limit_family() -> None:
    for code in RATE_LIMIT_CODES:
        assert isinstance(error_for(code), ih.RateLimitedError)
    assert issubclass(ih.LocalRateLimitError, ih.RateLimitedError)


def test_unknown_code_is_kept() -> None:
    err = error_for(4081, "忙")
    assert type(err) is ih.ApiError and err.code == 4081 and err.message == "忙"
    assert not lookup(4081).known


def test_chinese_texts_and_flags() -> None:
    assert lookup(4082).text == "超出同一手机号一天之内【5】条短信限制"
    assert "签名格式不正确" in lookup(4071).texts and len(lookup(4072).texts) >= 2
    assert lookup(4030).permanent_for_recipient and lookup(4080).retryable
    assert not lookup(405).retryable
    assert error_for(4080).retryable


def test_explain() -> None:
    text = ih.explain(4082)
    assert "4082" in text and "rate_limit" in text and "UTC+8" in text and "RateLimitedError" in text
    assert "does not know" in ih.explain("99999")


def test_readme_error_table_is_generated_from_registry() -> None:
    from pathlib import Path

    from ihuyi_async._codes import markdown_table

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- codes-table -->\n", 1)[1].split("\n<!-- /codes-table -->", 1)[0]
    assert block == markdown_table()
