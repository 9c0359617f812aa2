"""The generated (compiled) reserve functions agree with the interpreted specification."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ihuyi_async.limiter import Rule, RuleSet, provider_rules
from ihuyi_async.limiter._memory import _compile, _Table

RULESETS = [
    RuleSet(provider_rules()),  # the per-second margin of 0.2 s
    RuleSet(provider_rules(rolling_day=True, per_second_margin=0)),
    RuleSet([Rule.token_bucket("tbm", capacity=2, per=1.0, margin=0.3), Rule.per_day("d", 4)]),
    RuleSet(
        [
            Rule.token_bucket("tb", capacity=3, per=2.0),
            Rule.window("w", 2, 10, code=4086, rolling=False),
        ]
    ),
    RuleSet([*provider_rules(), Rule.token_bucket("v60", per=60, code=4085, kind="verification")]),
]

steps = st.lists(
    st.tuples(
        st.sampled_from(["13800000001", "13800000002", "13800000003"]),
        st.sampled_from([None, "verification"]),
        st.sampled_from(["", "a", "b"]),
        st.sampled_from([0.0, 0.25, 1.0, 30.0, 3600.0, 86400.0]),
        st.sampled_from([0.0, 1.0, 5.0]),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(which=st.integers(0, len(RULESETS) - 1), script=steps)
def test_compiled_equals_interpreted(
    which: int, script: list[tuple[str, str | None, str, float, float]]
) -> None:
    rules = RULESETS[which]
    compiled, interpreted = _Table(rules), _Table(rules)
    now = 1767283200.0 - 7200
    for mobile, kind, content, jump, max_delay in script:
        now += jump
        selected = rules.select(kind, bool(content))
        a = compiled.reserve(selected, mobile, content, now, max_delay)
        b = interpreted.reserve_interpreted(selected, mobile, content, now, max_delay)
        assert a == b
        assert type(a[0]) is type(b[0]) and type(a[1]) is type(b[1])
        assert compiled.cur == interpreted.cur and compiled.ccur == interpreted.ccur
        assert compiled.old == interpreted.old


@settings(max_examples=40, deadline=None)
@given(which=st.integers(0, len(RULESETS) - 1), script=steps)
def test_uncached_functions_read_the_table_and_register_nothing(
    which: int, script: list[tuple[str, str | None, str, float, float]]
) -> None:
    """Selections beyond the 256 cached get one-off functions: same answers, no globals kept."""
    rules = RULESETS[which]
    compiled, interpreted = _Table(rules), _Table(rules)
    now = 1767283200.0 - 7200
    for mobile, kind, content, jump, max_delay in script:
        now += jump
        selected = rules.select(kind, bool(content))
        a = _compile(compiled, selected, live=False)(mobile, content, now, max_delay)
        b = interpreted.reserve_interpreted(selected, mobile, content, now, max_delay)
        assert a == b
        assert compiled.cur == interpreted.cur and compiled.old == interpreted.old
    assert compiled._envs == []


def test_generated_source_is_inspectable() -> None:
    table = _Table(RuleSet(provider_rules()))
    fn = table.reserver(table.rules.select(None, False))
    assert fn.__doc__ is not None and "def reserve(mobile, digest, now, max_delay):" in fn.__doc__
    assert table.reserver(table.rules.select(None, False)) is fn


@settings(max_examples=60, deadline=None)
@given(which=st.integers(0, len(RULESETS) - 1), script=steps)
def test_eager_variant_grants_and_refuses_like_the_spec(
    which: int, script: list[tuple[str, str | None, str, float, float]]
) -> None:
    """try_acquire's variant (max_delay 0, no refusing rule needed): same grants, same state."""
    rules = RULESETS[which]
    compiled, interpreted = _Table(rules), _Table(rules)
    now = 1767283200.0 - 7200
    for mobile, kind, content, jump, _ in script:
        now += jump
        selected = rules.select(kind, bool(content))
        a = compiled.eager_reserver(selected)(mobile, content, now, 0.0)
        b = interpreted.reserve_interpreted(selected, mobile, content, now, 0.0)
        granted = type(b[1]) is tuple
        if granted:
            assert a == b
        else:
            assert a is None
        assert compiled.cur == interpreted.cur and compiled.ccur == interpreted.ccur
        assert compiled.old == interpreted.old
