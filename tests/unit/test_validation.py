import pytest
from hypothesis import given
from hypothesis import strategies as st

from ihuyi_async import ApiError, ContentRejectedError, InvalidRequestError
from ihuyi_async._validation import (
    count_segments,
    join_variables,
    normalize_mobile,
    render_template,
    validate_content,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("13800138000", "13800138000"), (" 19912345678 ", "19912345678"),
     ("+8613800138000", "13800138000"), ("8615012345678", "15012345678")],
)
def test_mobile_accepted(raw: str, expected: str) -> None:
    assert normalize_mobile(raw) == expected


@pytest.mark.parametrize(("raw", "code"), [("", 403), ("   ", 403), ("12800138000", 406),
                                          ("1380013800", 406), ("138001380001", 406),
                                          ("1380013800a", 406), ("852 51234567", 406),
                                          ("１３８００１３８０００", 406)])
def test_mobile_refused_with_provider_code(raw: str, code: int) -> None:
    with pytest.raises(InvalidRequestError) as info:
        normalize_mobile(raw)
    assert info.value.code == code and info.value.local


def test_mobile_type_error() -> None:
    with pytest.raises(TypeError, match="mobile must be a str"):
        normalize_mobile(13800138000)  # type: ignore[arg-type]


@pytest.mark.parametrize(("content", "cls", "code"), [
    ("", InvalidRequestError, 404), (" \n", InvalidRequestError, 404),
    ("hi 😀", ContentRejectedError, 4074), ("heart ❤️", ContentRejectedError, 4074),
    ("1\u20e3", ContentRejectedError, 4074), ("x" * 301, ContentRejectedError, 4073),
])
def test_content_refused(content: str, cls: type[ApiError], code: int) -> None:
    with pytest.raises(cls) as info:
        validate_content(content, max_length=300)
    assert info.value.code == code


def test_content_limits() -> None:
    validate_content("x" * 300, max_length=300)
    validate_content("【互亿无线】您的订单★已发货", max_length=300)  # BMP symbols are not emoji
    with pytest.raises(TypeError):
        validate_content(None, max_length=300)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "segments"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4), (300, 5)])
def test_segments_70_67(n: int, segments: int) -> None:
    assert count_segments("字" * n) == segments


def test_segments_count_signature_once() -> None:
    assert count_segments("x" * 64, "【互亿无线】") == 1
    assert count_segments("x" * 65, "【互亿无线】") == 2
    assert count_segments("【互亿无线】" + "x" * 64, "【互亿无线】") == 1


@given(st.integers(1, 1000))
def test_segments_property(n: int) -> None:
    got = count_segments("a" * n)
    if n <= 70:
        assert got == 1
    else:
        assert (got - 1) * 67 < n <= got * 67


def test_variables() -> None:
    assert join_variables(["1234"]) == "1234"
    assert join_variables(["20180515006", "张三", 100]) == "20180515006|张三|100"
    for bad, exc in [([], ValueError), ([""], ValueError), (["a|b"], ValueError),
                     ("1234", TypeError), ([1.5], TypeError), ([True], TypeError)]:
        with pytest.raises(exc):
            join_variables(bad)


def test_render_template() -> None:
    assert render_template("码：【变量】，【变量】", ["1", "2"]) == "码：1，2"
    with pytest.raises(ValueError):
        render_template("码：【变量】", ["1", "2"])
