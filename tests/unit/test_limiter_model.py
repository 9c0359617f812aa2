"""The memory store's rule kinds against a small model written from :class:`Rule`'s
documentation, over several rule sets (bursts, margins, rolling days, custom windows).

The model keeps every granted send and recounts each rule from that list; only the
token bucket keeps a running value, its theoretical arrival time, as the GCRA
definition does. Both of the store's paths are checked: the awaited ``reserve`` and
the synchronous ``nowait_reserver`` (``try_acquire``'s fast path).
(``tests/stores/test_model.py`` adds refunds and provider codes, on both stores.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from ihuyi_async.limiter import Grant, MemoryStore, Rule, RuleSet, provider_rules

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
    # the only per-number rule is for verification sends: a plain send with content counts
    # its content alone, so a number can have content state and no state of its own
    RuleSet(
        [
            Rule.token_bucket("v60", per=60, code=4085, kind="verification"),
            Rule.window("same", 1, 60.0, code=408, per_content=True),
        ]
    ),
]
START = 1767283200.0 - 7200  # two hours before midnight, China time


@dataclass
class Model:
    """What the rules promise, recounted from the list of granted sends."""

    rules: RuleSet
    sends: list[tuple[str, str, float, tuple[int, ...]]] = field(default_factory=list)
    tat: dict[tuple[int, str], float] = field(default_factory=dict)

    def _key(self, rule: Rule, mobile: str, content: str) -> str:
        return f"{mobile}/{content}" if rule.per_content else mobile

    def _counted(self, index: int, key: str) -> list[float]:
        rule = self.rules.rules[index]
        return sorted(
            at
            for mobile, content, at, selected in self.sends
            if index in selected and self._key(rule, mobile, content) == key
        )

    def _window_blocks(self, index: int, key: str, send: float) -> float | None:
        """When the window rule ``index`` admits a send at ``send`` again, None: now."""
        rule = self.rules.rules[index]
        times = self._counted(index, key)
        if rule.algorithm == "fixed_window":
            window = math.floor((send + rule.offset) / rule.period)
            same = [t for t in times if math.floor((t + rule.offset) / rule.period) == window]
            return rule.window_end(send) if len(same) >= rule.limit else None
        recent = [t for t in times if t > send - rule.period]
        return recent[-rule.limit] + rule.period if len(recent) >= rule.limit else None

    def reserve(
        self, mobile: str, kind: str | None, content: str, now: float, max_delay: float
    ) -> tuple[str, int, float]:
        """``("granted", -1, send_at)`` or ``("refused", rule index, retry_at)``."""
        selected = self.rules.select(kind, bool(content))
        send, waits_for = now, -1
        for i in selected:  # token buckets: a turn at TAT - (limit - 1) * interval
            rule = self.rules.rules[i]
            if rule.algorithm == "token_bucket":
                tat = self.tat.get((i, self._key(rule, mobile, content)), -math.inf)
                turn = tat - (rule.limit - 1) * rule.interval
                if turn > send:
                    send, waits_for = turn, i
        refused: tuple[str, int, float] | None = None
        for i in selected:  # windows, at the send's turn; the one blocking longest wins
            rule = self.rules.rules[i]
            if rule.algorithm != "token_bucket":
                until = self._window_blocks(i, self._key(rule, mobile, content), send)
                if until is not None and (refused is None or until > refused[2]):
                    refused = ("refused", i, until)
        if refused is not None:
            return refused
        if send - now > max_delay:
            return ("refused", waits_for, send)
        for i in selected:
            rule = self.rules.rules[i]
            if rule.algorithm == "token_bucket":
                key = (i, self._key(rule, mobile, content))
                self.tat[key] = max(self.tat.get(key, -math.inf), send) + rule.interval
        self.sends.append((mobile, content, send, selected))
        return ("granted", -1, send)


steps = st.lists(
    st.tuples(
        st.sampled_from(["13800000001", "13800000002", "13800000003"]),
        st.sampled_from([None, "verification"]),
        st.sampled_from(["", "a", "b"]),
        st.sampled_from([0.0, 0.25, 1.0, 30.0, 3600.0, 86400.0]),
        st.sampled_from([0.0, 1.0, 5.0, -1.0]),  # -1: the synchronous "now or never" path
    ),
    max_size=60,
)


def run(rules: RuleSet, script: list[tuple[str, str | None, str, float, float]]) -> None:
    store, model = MemoryStore(), Model(rules)
    now = START
    for mobile, kind, content, jump, max_delay in script:
        now += jump
        selected = rules.select(kind, bool(content))
        if max_delay < 0:
            reserve_now = store.nowait_reserver(rules, selected)
            assert reserve_now is not None
            undo = reserve_now(mobile, content, now)
            want = model.reserve(mobile, kind, content, now, 0.0)
            assert (undo is not None) == (want[0] == "granted"), (want, now)
            continue
        got = anyio.run(store.reserve, rules, selected, mobile, content, now, max_delay)
        want = model.reserve(mobile, kind, content, now, max_delay)
        if isinstance(got, Grant):
            assert ("granted", -1, got.send_at) == want
            assert got.now == now
        else:
            assert ("refused", got.rule, got.retry_at) == want
            assert got.resets_at == got.retry_at and got.now == now


@settings(max_examples=100, deadline=None)
@given(which=st.integers(0, len(RULESETS) - 1), script=steps)
def test_memory_store_agrees_with_the_model(
    which: int, script: list[tuple[str, str | None, str, float, float]]
) -> None:
    run(RULESETS[which], script)


def test_the_model_catches_a_wrong_answer() -> None:
    """The comparison can fail: a store that forgets the day's count disagrees."""
    rules = RULESETS[2]  # burst of 2, then 1.3 s apart; 4 per day
    model = Model(rules)
    answers = [model.reserve("13800000001", None, "", START + 10.0 * i, 0.0)[0] for i in range(5)]
    assert answers == ["granted"] * 4 + ["refused"]


def test_a_number_with_content_state_only_is_not_taken_for_a_new_one() -> None:
    """The synchronous path grants a never-seen number without checking rules; a number
    whose only state is per content (a plain send, where the only per-number rule is for
    verification) is not never-seen: the identical-content rule still refuses."""
    rules = RULESETS[-1]
    run(rules, [("13800000001", None, "a", 0.0, -1.0), ("13800000001", "verification", "a", 1.0, -1.0)])
    store = MemoryStore()
    plain, verification = rules.select(None, True), rules.select("verification", True)
    first = store.nowait_reserver(rules, plain)
    assert first is not None and first("13800000001", "a", START) is not None
    again = store.nowait_reserver(rules, verification)
    assert again is not None
    assert again("13800000001", "a", START + 1.0) is None  # the same content within 60 s
