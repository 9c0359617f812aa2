"""The API reference (#20): .ci/api_docs.py builds it with pdoc and fails on warnings and
on cross-references that do not resolve; these tests run it as CI does."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "api_docs.py"


def run(out: Path, *modules: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(SCRIPT), "-o", str(out), *modules],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )


def test_the_api_reference_builds_without_warnings_or_broken_references(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "no warnings, no broken references" in done.stdout
    pages = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html"))
    # public modules only: no page for a module with a part starting with "_"
    assert pages == [
        "ihuyi_async.html", "ihuyi_async/idempotency.html", "ihuyi_async/limiter.html",
        "ihuyi_async/pushes.html", "ihuyi_async/testing.html", "ihuyi_async/testing/faults.html",
        "ihuyi_async/testing/pytest_plugin.html",
        "ihuyi_async/verify.html", "index.html",
    ]
    top = (tmp_path / "ihuyi_async.html").read_text()
    assert 'id="SendResult"' in top and 'id="IhuyiClient.send"' in top
    assert 'id="_publish"' not in top and "ihuyi_async._models" not in top
    # members a public class inherits from a private base are documented on it
    assert 'id="IhuyiClient.balance"' in top and 'id="IhuyiClient.aclose"' in top
    assert 'id="MarketingSmsClient.balance"' in top
    assert 'id="ApiError.with_traceback"' not in top  # but not those of builtins
    # a string annotation of a re-exported class, resolved where the class is defined
    assert '<span class="name">sent_at</span><span class="annotation">: datetime.datetime</span>' in top
    # :class:`~ihuyi_async.SendResult` renders as a link, without the "~" pdoc would keep
    idem = (tmp_path / "ihuyi_async" / "idempotency.html").read_text()
    assert '<code><a href="../ihuyi_async.html#SendResult">ihuyi_async.SendResult</a></code>' in idem
    # a :raises: field links its exception (here from another package, written ~ihuyi_async.X)
    verify = (tmp_path / "ihuyi_async" / "verify.html").read_text()
    assert ('<li><strong><code><a href="../ihuyi_async.html#InvalidRequestError">ihuyi_async.InvalidRequestError'
            '</a></code></strong>') in verify
    assert "<code>~" not in idem


def test_the_build_fails_on_warnings_and_broken_references(tmp_path: Path) -> None:
    package = tmp_path / "src" / "docpkg"
    package.mkdir(parents=True)
    (package / "_impl.py").write_text(textwrap.dedent('''
        """Private."""
        from __future__ import annotations

        import datetime as _dt


        class Good:
            """Fine: :class:`ssl.SSLContext` and :class:`ValueError` exist outside the package.

            :ivar when: a :class:`datetime.datetime`; see also :meth:`Good.touch`.
            """

            when: _dt.datetime
            later: Missing

            def touch(self, at: float = 0) -> None:
                """Refers to :class:`Nowhere` and to ``docpkg.gone.Thing``.

                :param at: when (default: now). pdoc alone names this field "at: when (default".
                :raises ValueError: fine, a builtin.
                :raises NoSuchError: nowhere. :raises KeyError: left as text, not at a line start.
                """
    '''))
    (package / "__init__.py").write_text(textwrap.dedent('''
        """A package whose docs are broken: :func:`vanished` and :mod:`docpkg._impl`."""
        from ._impl import Good

        __all__ = ["Good"]
        for _name in __all__:
            globals()[_name].__module__ = __name__  # the bare rewrite, without publish()
    '''))
    done = run(tmp_path / "out", "docpkg", pythonpath=tmp_path / "src")
    assert done.returncode == 1
    problems = done.stderr.splitlines()
    assert all(line.startswith(("pdoc warning: ", "docpkg")) for line in problems), problems
    text = done.stderr
    # both string annotations fail in the package namespace (the bug publish() fixes)
    assert "_dt.datetime for docpkg.Good.when" in text
    assert "Missing for docpkg.Good.later" in text
    assert "docpkg: broken reference :func:`vanished`" in text
    assert "docpkg: broken reference :mod:`docpkg._impl`" in text
    assert "docpkg.Good.touch: broken reference :class:`Nowhere`" in text
    assert "docpkg.Good.touch: broken reference docpkg.gone.Thing" in text
    assert "docpkg.Good.touch: broken reference :raises NoSuchError:" in text
    assert "docpkg.Good.touch: a field left as text: ':raises KeyError:'" in text
    assert "SSLContext" not in text and "ValueError" not in text and "Good.touch`" not in text
    assert "1 module pages" in done.stdout and f"{len(problems)} problem(s)" in done.stdout
    page = (tmp_path / "out" / "docpkg.html").read_text()
    assert "<li><strong>at</strong>: \nwhen (default: now)." in page and "field rendered" not in text
    # :ivar: fields become an Attributes list (pdoc alone leaves them as plain text)
    assert '<h6 id="attributes">Attributes</h6>' in page and "<li><strong>when</strong>: a " in page


def test_dead_links_between_pages_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("api_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    api_docs = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "api_docs", api_docs)
    spec.loader.exec_module(api_docs)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg.html").write_text(
        '<a href="#A">A</a><a href="#gone">x</a><a href="pkg/sub.html#B">B</a><a href="pkg/sub.html#C">C</a>'
        '<a href="https://pdoc.dev/#x">pdoc</a><section id="A"></section>'
    )
    (tmp_path / "pkg" / "sub.html").write_text('<a href="../pkg.html#A">A</a><a href="../nope.html">n</a><p id="B">')
    assert sorted(api_docs.dead_links(tmp_path)) == [
        "pkg.html: dead link #gone",
        "pkg.html: dead link pkg/sub.html#C",
        "pkg/sub.html: dead link ../nope.html",
    ]
