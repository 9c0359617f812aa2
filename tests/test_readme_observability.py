"""README "Observability": the console-exporter example runs as printed, and what it prints
is the documented spans and metrics, with no number, content or key in them (#20)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


def example() -> str:
    section = README.read_text(encoding="utf-8").split("## Observability", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return str(code)


def test_the_observability_example_runs_and_prints_the_documented_spans(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example(), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "13800138000" not in out and "APIKEY" not in out and "验证码" not in out
    decoder, at = json.JSONDecoder(), 0
    spans: dict[str, Any] = {}
    metrics: set[str] = set()
    values: list[Any] = []  # every attribute value of every span, event and metric point
    while (start := out.find("{", at)) != -1:  # the exporters print one JSON object per span / export
        obj, at = decoder.raw_decode(out, start)
        if "resource_metrics" in obj:
            found = [m for r in obj["resource_metrics"] for s in r["scope_metrics"] for m in s["metrics"]]
            metrics |= {m["name"] for m in found}
            values += [v for m in found for p in m["data"]["data_points"] for v in p["attributes"].values()]
        else:
            spans[obj["name"]] = obj
            values += [*obj["attributes"].values(), *(v for e in obj["events"] for v in e["attributes"].values())]
    assert {"ihuyi.sends", "ihuyi.send.duration"} <= metrics
    assert not [v for v in values if "4821" in str(v) or "8001380" in str(v)]  # the code, an unmasked number
    assert set(spans) == {"signup", "ihuyi Submit", "ihuyi GetNum"}
    submit = spans["ihuyi Submit"]
    assert submit["parent_id"] == spans["signup"]["context"]["span_id"]
    assert submit["attributes"]["ihuyi.outcome"] == "accepted"
    assert submit["attributes"]["ihuyi.mobile"] == "138****8000"
