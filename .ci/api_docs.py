"""Build the API reference from the docstrings with pdoc, and fail on what makes it wrong.

    python .ci/api_docs.py [-o OUT] [MODULE ...]

Documents the public modules of ``ihuyi_async`` (every module whose dotted name has no
part starting with ``_``; within each, pdoc shows only names not starting with ``_``
and what ``__all__`` exports) into OUT (default ``build/api``, git-ignored). Exits 1,
one problem a line on stderr, when

* pdoc warned (an annotation it cannot resolve, a member it cannot place, ...);
* a cross-reference did not become a link: a reST role (``:class:`X```, ``:meth:``,
  ``:func:``, ``:mod:``, ``:attr:``, ``:data:``, ...) or an exception of a ``:raises X:``
  field naming something that is not a documented public name of the package, nor an
  importable name outside it (those cannot be linked, only checked; write
  ``:raises ~ihuyi_async.X:`` for an exception of another package), or a dotted
  ``ihuyi_async.x`` path that names nothing public;
* a field list item rendered with a colon in its name, or a field left as text (``:raises X:``
  in the middle of a line, where neither pdoc nor Sphinx reads it);
* a link between the pages leads to no page or no anchor.

Through the template in ``.ci/pdoc-templates``, docstrings are prepared for pdoc: a role
renders as pdoc renders backticks (``:class:`~x.Y``` shows ``x.Y``; pdoc would print the
``~``), a ``:raises:`` field's exceptions become links, ``:ivar:`` fields an "Attributes"
list (pdoc leaves them as text), and a field's text moves to its own line (pdoc would read
``:param x: a (default: b)`` as a field named ``x: a (default``). A class also lists the
members it inherits from a private base of the package (pdoc drops members of bases outside
the documentation: ``IhuyiClient.balance`` would be missing).
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import pkgutil
import re
import sys
import warnings
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import pdoc
import pdoc.doc
import pdoc.render

TEMPLATES = Path(__file__).with_name("pdoc-templates")
ROLE = re.compile(r"(?::py)?:(mod|func|data|const|class|meth|attr|exc|obj):`([^`]+)`")
FIELD = re.compile(r"^(?P<head>:(?:param|raises|return)(?: +[^:\n]+)?:) +(?P<text>\S.*)$", re.MULTILINE)
IVAR = re.compile(r"^:ivar +(?P<name>[^:\n]+):(?P<body>.*(?:(?:\n *)*\n +\S.*)*)", re.MULTILINE)
RAISES = re.compile(r"^:raises ([^:`\n]+):", re.MULTILINE)
RAW_FIELD = re.compile(r"(?<![\w`]):(?:param|ivar|raises|return|type|rtype)\b[^:\n]*:")
MANGLED_FIELD = re.compile(r"<li><strong>([^<]*:[^<]*)</strong>")


def public_modules(root: str) -> list[str]:
    """``root`` and every module below it whose dotted name has no part starting with ``_``,
    less those pdoc reaches by itself (named in their package's ``__all__``)."""
    package = importlib.import_module(root)
    below = pkgutil.walk_packages(package.__path__, root + ".", onerror=_raise)
    names = [root, *(m.name for m in below if not any(p.startswith("_") for p in m.name.split(".")))]
    return sorted(name for name in names if not _reached(name))


def _reached(name: str) -> bool:
    parent, _, last = name.rpartition(".")
    return bool(parent) and last in getattr(importlib.import_module(parent), "__all__", ())


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} while listing the public modules")


def _target(role: str, text: str) -> str:
    """What a role renders as: the target without ``~``, ``()`` after a callable."""
    text = text.strip()
    if text.endswith(">") and "<" in text:  # :class:`title <target>`
        text = text[text.rindex("<") + 1 : -1]
    text = text.lstrip("~!")
    return f"{text}()" if role in ("meth", "func") and not text.endswith("()") else text


def _raised(names: str) -> list[str]:
    """The exception names of a ``:raises A, B:`` / ``:raises A or B:`` field."""
    return [n.lstrip("~") for n in re.split(r"[ ,]+", names.strip()) if n and n != "or"]


def _attributes(docstring: str) -> str:
    """``:ivar x: text`` fields as an "Attributes" list, as pdoc renders ``:param:`` (pdoc
    leaves ``:ivar:`` as plain text)."""
    first = True

    def item(m: re.Match[str]) -> str:
        nonlocal first
        head = "\n###### Attributes\n" if first else ""
        first = False
        return f"{head} - **{m['name'].strip()}**: {m['body'].strip()}"

    return IVAR.sub(item, docstring)


def prepare_rst(docstring: str) -> str:
    """``:class:`~x.Y``` -> ```x.Y```, ``:meth:`f``` -> ```f()```; and each field's text
    moved to its own line (``:param x: a (default: b)`` -> ``:param x:`` + ``    a (default: b)``),
    as pdoc reads a field's name up to the *last* colon of its line."""
    docstring = ROLE.sub(lambda m: f"`{_target(m.group(1), m.group(2))}`", docstring)
    docstring = _attributes(docstring)
    docstring = RAISES.sub(lambda m: f":raises {', '.join(f'`{n}`' for n in _raised(m.group(1)))}:", docstring)
    return FIELD.sub(r"\g<head>\n    \g<text>", docstring)


class _Codes(HTMLParser):
    """Inline ``<code>`` spans of a rendered docstring (text, linked?) and the plain text
    outside links and code blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.codes: list[tuple[str, bool]] = []
        self.unlinked_text: list[str] = []
        self._pre = self._a = 0
        self._code: list[str] | None = None
        self._code_linked = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre":
            self._pre += 1
        elif tag == "a":
            self._a += 1
            self._code_linked = self._code_linked or self._code is not None
        elif tag == "code" and not self._pre:
            self._code, self._code_linked = [], self._a > 0

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._pre -= 1
        elif tag == "a":
            self._a -= 1
        elif tag == "code" and self._code is not None:
            self.codes.append(("".join(self._code), self._code_linked))
            self._code = None

    def handle_data(self, data: str) -> None:
        if self._code is not None:
            self._code.append(data)
        if not self._pre and not self._a:
            self.unlinked_text.append(data)


def _resolves_outside(identifier: str, root: str) -> bool:
    """Whether ``identifier`` names something importable that is not part of ``root``."""
    parts = identifier.removesuffix("()").split(".")
    if parts[0] == root:
        return False
    if len(parts) == 1:
        return hasattr(builtins, parts[0])
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            return False
        return True
    return False


@dataclass
class Checker:
    """The ``check_references`` filter: records each reference a docstring failed to link."""

    root: str
    problems: list[str] = field(default_factory=list)
    checked: int = 0

    def __call__(self, rendered: str, doc: pdoc.doc.Doc[Any]) -> str:
        page = _Codes()
        page.feed(rendered)
        linked = {text for text, is_link in page.codes if is_link}
        unlinked = {text for text, is_link in page.codes if not is_link}
        broken: set[str] = set()
        references = [(m.group(0), _target(m.group(1), m.group(2))) for m in ROLE.finditer(doc.docstring)]
        references += [(f":raises {n}:", n) for m in RAISES.finditer(doc.docstring) for n in _raised(m.group(1))]
        for written, target in references:
            self.checked += 1
            if target in linked and target not in unlinked:
                continue
            if target in unlinked and _resolves_outside(target, self.root):
                continue  # an outside name pdoc cannot link: it exists, that is all we check
            broken.add(target.removesuffix("()"))
            self.problems.append(f"{doc.fullname}: broken reference {written} ({target} is no public name)")
        for name in MANGLED_FIELD.findall(rendered):
            self.problems.append(f"{doc.fullname}: a field rendered with the name {name!r}")
        for raw in RAW_FIELD.findall("".join(page.unlinked_text)):
            self.problems.append(f"{doc.fullname}: a field left as text: {raw!r} (not at a line start?)")
        dotted = re.compile(rf"\b{re.escape(self.root)}(?:\.\w+)+")
        for text in page.unlinked_text:
            for path in dotted.findall(text):
                self.checked += 1
                if path not in broken:
                    broken.add(path)
                    self.problems.append(f"{doc.fullname}: broken reference {path} (names nothing public)")
        return rendered


def members_filter(root: str) -> Any:
    """The ``documented_members`` filter: a class's own members, then those it inherits
    from a base in an undocumented module of ``root`` (pdoc would drop them)."""

    @jinja2.pass_context
    def documented_members(context: Any, cls: pdoc.doc.Class) -> list[pdoc.doc.Doc[Any]]:
        members = list(cls.own_members)
        names = {m.name for m in members}
        for (module, _), inherited in cls.inherited_members.items():
            if module.split(".")[0] == root and module not in context["all_modules"]:
                members += [m for m in inherited if m.name not in names]
                names |= {m.name for m in inherited}
        return members

    return documented_members


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.hrefs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            elif name == "href" and value and tag == "a":
                self.hrefs.add(value)


def dead_links(out: Path) -> list[str]:
    """Links between the pages in ``out`` whose page or anchor does not exist."""
    pages: dict[Path, _Anchors] = {}
    for page in sorted(out.rglob("*.html")):
        pages[page.resolve()] = anchors = _Anchors()
        anchors.feed(page.read_text(encoding="utf-8"))
    problems = []
    for page, anchors in pages.items():
        for href in sorted(anchors.hrefs):
            path, _, fragment = href.partition("#")
            if re.match(r"[a-z]+:", path):
                continue  # another site
            target = (page.parent / path).resolve() if path else page
            if target.suffix == ".html" and (target not in pages or fragment and fragment not in pages[target].ids):
                problems.append(f"{page.relative_to(out.resolve())}: dead link {href}")
    return problems


def build(modules: list[str], out: Path) -> tuple[list[str], int]:
    """Render ``modules`` into ``out``; return the problems found and the references checked."""
    checker = Checker(root=modules[0].split(".")[0])
    pdoc.render.configure(docformat="restructuredtext", template_directory=TEMPLATES)
    pdoc.render.env.filters["prepare_rst"] = prepare_rst
    pdoc.render.env.filters["check_references"] = checker
    pdoc.render.env.filters["documented_members"] = members_filter(checker.root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*modules, output_directory=out)
    problems = [f"pdoc warning: {w.message}" for w in caught] + checker.problems + dead_links(out)
    return problems, checker.checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-o", "--out", type=Path, default=Path("build/api"))
    parser.add_argument("modules", nargs="*", help="default: the public modules of ihuyi_async")
    args = parser.parse_args(argv)
    modules = args.modules or public_modules("ihuyi_async")
    problems, checked = build(modules, args.out)
    sys.stderr.writelines(f"{line}\n" for line in problems)
    verdict = f"{len(problems)} problem(s)" if problems else "no warnings, no broken references"
    pages = sum(1 for page in args.out.rglob("*.html") if page.name != "index.html")
    sys.stdout.write(f"API reference: {pages} module pages in {args.out}; {checked} references checked; {verdict}\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
