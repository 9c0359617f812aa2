"""Fuzz figures (#12): every answer parser, the push parser and the push receiver.

``python -m benchmarks.fuzz [--bodies N] [--forms N] [--requests N] [--seed S]`` (or
``python benchmarks/fuzz.py``) runs the corpus of ``tests/fuzzing/corpus.py`` (the
same generators and checks as the fuzz tests, imported from there) and prints a
markdown table: per target, the inputs, the outcomes by kind (the value returned,
or the exception raised, or the HTTP status answered), and the inputs whose
outcome was not a documented one ("unexpected"; the tests require 0). Also written
to ``benchmarks/results/fuzz.md``. Exit status 1 when anything was unexpected.

Defaults (100,000 answers, each given to 10 parser calls; 100,000 forms; 30,000
requests to each of 2 receivers) take 20 to 35 s on a 2-core machine (CPU time about 19 s).
:func:`fuzz_runs` runs them for other scripts; :func:`fuzz_summary_markdown` (compact,
for the README's "Reliability" section) and :func:`fuzz_markdown` (by outcome) format them.
"No answer (disconnected)" counts requests whose client went away before its body was read
(documented: nobody to answer).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the corpus lives in tests/fuzzing/
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from fuzzing.corpus import FuzzRun, run_answers, run_forms, run_requests  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def fuzz_runs(bodies: int, forms: int, requests: int, seed: int = 12) -> list[FuzzRun]:
    """Run the three families; one :class:`FuzzRun` per target."""
    return [*run_answers(bodies, seed), run_forms(forms, seed), *run_requests(requests, seed)]


def _outcomes(run: FuzzRun) -> str:
    return " · ".join(f"{name} {count:,}" for name, count in sorted(run.outcomes.items()))


def fuzz_markdown(runs: list[FuzzRun]) -> str:
    """The table: target, inputs, outcomes, unexpected, µs per input."""
    lines = [
        "| target | inputs | outcomes | unexpected | µs / input |",
        "|---|---:|---|---:|---:|",
    ]
    for run in runs:
        per_input = 1e6 * run.seconds / run.inputs if run.inputs else 0.0
        lines.append(
            f"| {run.target} | {run.inputs:,} | {_outcomes(run)} | {run.unexpected_count:,} "
            f"| {per_input:.1f} |"
        )
    total = sum(run.inputs for run in runs)
    unexpected = sum(run.unexpected_count for run in runs)
    lines.append(f"| **all** | **{total:,}** | | **{unexpected:,}** | |")
    return "\n".join(lines)


def fuzz_summary_markdown(runs: list[FuzzRun]) -> str:
    """A compact table for the README: target, inputs, values returned, documented errors, unexpected."""
    lines = [
        "| target | inputs | returned / 200 | documented error, 4xx, client gone | unexpected |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        good = sum(
            n for name, n in run.outcomes.items()
            if name in ("returned", "200") or name in ("DeliveryReceipt", "Reply", "TemplateReview")
        )  # fmt: skip
        documented = run.inputs - good - run.unexpected_count
        lines.append(
            f"| {run.target} | {run.inputs:,} | {good:,} | {documented:,} | {run.unexpected_count:,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=100_000, help="fuzzed answers")
    parser.add_argument("--forms", type=int, default=100_000, help="fuzzed push forms")
    parser.add_argument("--requests", type=int, default=30_000, help="fuzzed ASGI requests")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = fuzz_runs(args.bodies, args.forms, args.requests, args.seed)
    elapsed = time.perf_counter() - started
    text = (
        f"# Fuzz figures\n\n`python -m benchmarks.fuzz --bodies {args.bodies} --forms {args.forms} "
        f"--requests {args.requests} --seed {args.seed}`: {elapsed:.1f} s.\n\n"
        f"{fuzz_summary_markdown(runs)}\n\nBy outcome:\n\n{fuzz_markdown(runs)}\n"
    )
    print(text)
    for run in runs:
        for outcome, sample in run.unexpected[:3]:
            print(f"{run.target}: {outcome}: {sample!r:.300}", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz.md").write_text(text, encoding="utf-8")
    return 1 if any(run.unexpected_count for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
