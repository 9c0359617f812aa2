"""The example app's jobs and the Redis keys where its workers record them (no taskiq here:
the test imports this too).

A job is a message id (its idempotency key), a number and a text; its content carries
the id as a marker (``[sms-00042]``), so what the provider accepted can be matched to
the job that sent it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# -- Redis keys of the example app (not the library's) --------------------------------


def outcomes_key(prefix: str) -> str:
    """A hash: delivery id (the message id, ``#dup`` for a producer's repeat) -> outcome."""
    return f"{prefix}app:outcome"


def started_key(worker: str, prefix: str) -> str:
    """A set: the delivery ids a worker started."""
    return f"{prefix}app:started:{worker}"


def finished_key(worker: str, prefix: str) -> str:
    """A set: the delivery ids a worker finished (their outcome recorded)."""
    return f"{prefix}app:finished:{worker}"


# -- the jobs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    mobile: str
    content: str


def plan(seed: int, jobs: int = 10_000, per_hot: int = 8) -> list[Job]:
    """``jobs`` messages, shuffled: one number in 50 is "hot" and gets ``per_hot`` jobs (more
    than the provider's 5 a day, so the shared limiter refuses the rest), every other job has
    its own number (200 hot numbers and 8,400 single ones for 10,000 jobs)."""
    hot_numbers = jobs // 50
    rng = random.Random(seed)
    numbers: set[str] = set()
    while len(numbers) < jobs - hot_numbers * per_hot + hot_numbers:
        numbers.add(f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}")
    pool = sorted(numbers)
    rng.shuffle(pool)
    hot, single = pool[:hot_numbers], pool[hot_numbers:]
    mobiles = [m for m in hot for _ in range(per_hot)] + single
    rng.shuffle(mobiles)
    return [
        Job(f"sms-{i:05d}", mobile, f"您的订单 [sms-{i:05d}] 已发货，请留意查收。")
        for i, mobile in enumerate(mobiles)
    ]
