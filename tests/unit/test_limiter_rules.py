"""Rules as data: constructors, validation, defaults, selection, the UTC+8 calendar."""

from __future__ import annotations

import datetime as dt

import pytest

from ihuyi_async.limiter import (
    CHINA_TZ,
    DEFAULT_RULES,
    PER_SECOND_MARGIN,
    Rule,
    RuleSet,
    provider_rules,
    to_china_time,
)
from ihuyi_async.limiter._rules import refusal_text

MIDNIGHT = 1767283200.0  # 2026-01-02 00:00:00 UTC+8


def test_default_rules_are_the_providers() -> None:
    by_name = {r.name: r for r in DEFAULT_RULES}
    assert by_name["per_second"] == Rule(
        name="per_second", code=4080, algorithm="token_bucket", limit=1, period=1.0, margin=0.2
    )
    # the provider counts 1/s on arrival: turns are spaced by 1 s plus the margin
    assert PER_SECOND_MARGIN == 0.2 and by_name["per_second"].interval == 1.2
    assert (by_name["per_day"].limit, by_name["per_day"].code, by_name["per_day"].offset) == (
        5,
        4082,
        28800.0,
    )
    v = by_name["verification_per_day"]
    assert (v.limit, v.code, v.kind) == (5, 4085, "verification")
    m = by_name["identical_per_minute"]
    assert (m.limit, m.period, m.algorithm, m.per_content, m.code) == (
        2,
        60.0,
        "rolling_window",
        True,
        408,
    )
    d = by_name["identical_per_day"]
    assert (d.limit, d.algorithm, d.per_content, d.code) == (20, "fixed_window", True, 408)


def test_provider_rules_are_adjustable() -> None:
    rules = provider_rules(
        per_day=10, verification_per_day=None, identical_per_minute=None, rolling_day=True
    )
    assert [r.name for r in rules] == ["per_second", "per_day", "identical_per_day"]
    assert (
        rules[1].limit == 10
        and rules[1].algorithm == "rolling_window"
        and rules[1].period == 86400.0
    )
    exact = provider_rules(per_second_margin=0)[0]
    assert (exact.margin, exact.interval) == (0.0, 1.0)
    assert provider_rules(per_second_margin=0.5)[0].interval == 1.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "code": 1, "algorithm": "token_bucket", "limit": 1, "period": 1.0},
        {"name": "a b", "code": 1, "algorithm": "token_bucket", "limit": 1, "period": 1.0},
        {"name": "a{b}", "code": 1, "algorithm": "token_bucket", "limit": 1, "period": 1.0},
        {"name": "x", "code": 1, "algorithm": "leaky", "limit": 1, "period": 1.0},
        {"name": "x", "code": 1, "algorithm": "token_bucket", "limit": 0, "period": 1.0},
        {"name": "x", "code": 1, "algorithm": "token_bucket", "limit": True, "period": 1.0},
        {"name": "x", "code": 1, "algorithm": "token_bucket", "limit": 1, "period": 0.0},
        {"name": "x", "code": 1, "algorithm": "token_bucket", "limit": 1, "period": float("inf")},
        {
            "name": "x",
            "code": 1,
            "algorithm": "fixed_window",
            "limit": 1,
            "period": 1.0,
            "offset": float("nan"),
        },
        {
            "name": "x",
            "code": 1,
            "algorithm": "token_bucket",
            "limit": 1,
            "period": 1.0,
            "margin": -0.1,
        },
        {
            "name": "x",
            "code": 1,
            "algorithm": "token_bucket",
            "limit": 1,
            "period": 1.0,
            "margin": float("nan"),
        },
        {
            "name": "x",
            "code": 1,
            "algorithm": "rolling_window",
            "limit": 1,
            "period": 1.0,
            "margin": 0.2,
        },
    ],
)
def test_invalid_rules_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Rule(**kwargs)  # type: ignore[arg-type]


def test_ruleset_orders_buckets_first_and_rejects_duplicates() -> None:
    rs = RuleSet([Rule.per_day("d", 3), Rule.token_bucket("b")])
    assert [r.name for r in rs] == ["b", "d"] and len(rs) == 2
    assert rs.horizon == 86400.0
    assert RuleSet([Rule.token_bucket("b", capacity=3, per=2, margin=0.5)]).horizon == 7.5
    with pytest.raises(ValueError, match="unique"):
        RuleSet([Rule.per_day("d", 3), Rule.per_day("d", 4)])
    with pytest.raises(TypeError):
        RuleSet(["per_day"])  # type: ignore[list-item]
    assert "b, d" in repr(rs)


def test_selection_by_kind_and_content() -> None:
    rs = RuleSet(DEFAULT_RULES)

    def names(idx: tuple[int, ...]) -> list[str]:
        return [rs.rules[i].name for i in idx]

    assert names(rs.select(None, False)) == ["per_second", "per_day"]
    assert names(rs.select("verification", False)) == [
        "per_second",
        "per_day",
        "verification_per_day",
    ]
    assert names(rs.select(None, True)) == [
        "per_second",
        "per_day",
        "identical_per_day",
        "identical_per_minute",
    ]
    assert names(rs.for_code(4086, False)) == ["per_second"]
    assert names(rs.for_code(408, False)) == []
    assert names(rs.for_code(4085, False)) == ["verification_per_day"]


def test_window_end_is_midnight_china_time() -> None:
    rule = Rule.per_day("d", 5)
    assert rule.window_end(MIDNIGHT - 1) == MIDNIGHT
    assert rule.window_end(MIDNIGHT) == MIDNIGHT + 86400
    assert to_china_time(MIDNIGHT) == dt.datetime(2026, 1, 2, tzinfo=CHINA_TZ)
    assert CHINA_TZ.utcoffset(None) == dt.timedelta(hours=8)


def test_refusal_text_names_what_each_rule_refuses() -> None:
    texts = {r.name: refusal_text(r, "138****8000") for r in provider_rules()}
    assert texts == {
        "per_second": "more than 1 message per second to 138****8000",
        "per_day": "6th message to 138****8000 today, China time",
        "verification_per_day": "6th verification message to 138****8000 today, China time",
        "identical_per_day": "21st identical message to 138****8000 today, China time",
        "identical_per_minute": "3rd identical message to 138****8000 within a minute",
    }
    assert (
        refusal_text(Rule.per_day("d", 1, rolling=True), "x") == "2nd message to x within 24 hours"
    )
    assert (
        refusal_text(Rule.per_day("d", 11, utc_offset_hours=0), "x")
        == "12th message to x today, UTC+0"
    )
    assert (
        refusal_text(Rule.token_bucket("v", capacity=2, per=60, kind="verification"), "x")
        == "more than 2 verification messages per minute to x"
    )
    assert refusal_text(Rule.window("w", 12, 90, code=1, rolling=False), "x") == (
        "13th message to x in one 90 s window"
    )


def test_constructors() -> None:
    b = Rule.token_bucket("v", capacity=2, per=60, code=4085, kind="verification")
    assert (b.limit, b.period, b.kind, b.code) == (2, 60.0, "verification", 4085)
    assert (b.margin, b.interval) == (0.0, 60.0)
    assert Rule.token_bucket("m", margin=1).interval == 2.0
    w = Rule.window("w", 3, 10, code=4086, rolling=False, offset=5)
    assert (w.algorithm, w.offset) == ("fixed_window", 5.0)
    assert Rule.per_day("x", 1, utc_offset_hours=0).offset == 0.0
