"""Formatting of the generated Python: isort everywhere, black where it changes something.

Every generated file must read as if black and isort had formatted it, because users run
them over their trees and a generated file that they reformat would count as hand-edited.
Running black over everything is most of a generation's time, though (about 25 ms per
hundred lines), and most of what the templates write is already in black's style: the
templates are written that way, `py_literal` quotes strings as black does and `docstring`
indents as black does. What the templates cannot promise is the length of lines that
hold spec text. So:

- isort sorts the imports of every file (it is cheap);
- black formats only the top-level statements that hold a line wider than black's limit,
  each on its own (black formats statement by statement, so the result is the same);
- source that no template wrote (datamodel-code-generator's models) is formatted whole.

tests/test_generated.py checks that every file generated from every document in the
corpus is exactly what isort and black make of it.
"""

from __future__ import annotations

import ast
import functools
from typing import TYPE_CHECKING

from asyncgen import cache

if TYPE_CHECKING:
    import black
    import isort

LINE_LENGTH = 88

# Bumped whenever the formatting rules change, so cached results of older rules miss.
_RULES = "2"


def format_python(path: str, source: str, package: str, *, whole: bool = False) -> str:
    """Imports sorted (isort, black profile) and code formatted (black), cached.

    `whole` formats the whole file with black; otherwise only the top-level statements
    holding a line that is too long for black's taste.
    """
    entry = cache.key(
        "format",
        _RULES,
        str(whole),
        cache.tool_version("black"),
        cache.tool_version("isort"),
        package,
        source,
    )
    cached = cache.get("format", entry)
    if cached is not None:
        return cached
    import isort

    sorted_source = isort.code(source, config=_isort_config(package))
    try:
        formatted = _black(sorted_source) if whole else _black_where_needed(sorted_source)
    except (SyntaxError, ValueError) as exc:  # a template bug, never the user's fault
        raise RuntimeError(f"generated {path} is not valid Python: {exc}") from exc
    cache.put("format", entry, formatted)
    return formatted


@functools.cache
def _isort_config(package: str) -> isort.Config:
    """isort's settings, built once: building them costs more than sorting a small file."""
    import isort

    return isort.Config(profile="black", known_first_party=[package], line_length=LINE_LENGTH)


def _width(line: str) -> int:
    """An upper bound of the width black measures: a wide character counts two."""
    return len(line) + sum(1 for ch in line if not ch.isascii())


def _black_where_needed(source: str) -> str:
    # Split at "\n" only, as Python numbers lines: `splitlines` would also split at
    # U+2028 and other characters that text inside a string may hold.
    lines = source.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    wide = {number for number, line in enumerate(lines, 1) if _width(line.rstrip()) > LINE_LENGTH}
    if not wide:
        return source
    replaced: dict[int, tuple[int, str]] = {}  # first line -> (last line, formatted text)
    _plan_statements(ast.parse(source).body, lines, wide, [], replaced)
    out: list[str] = []
    number = 1
    while number <= len(lines):
        if number in replaced:
            last, text = replaced[number]
            out.append(text)
            number = last + 1
        else:
            out.append(lines[number - 1])
            number += 1
    return "".join(out)


_Scope = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def _plan_statements(
    body: list[ast.stmt],
    lines: list[str],
    wide: set[int],
    scopes: list[_Scope],
    replaced: dict[int, tuple[int, str]],
) -> None:
    """Format the statements of `body` that hold a wide line, descending into classes and
    functions so that black sees as little as it needs to.

    A statement nested in classes or functions is formatted inside stand-in headers of the
    same kinds (`class _:`, `def _():`), which give black the same indentation and the
    same idea of what a docstring is as the real ones do.
    """
    for node in body:
        decorators = getattr(node, "decorator_list", [])
        first = min([node.lineno, *(d.lineno for d in decorators)])
        last = node.end_lineno or node.lineno
        holds = {number for number in wide if first <= number <= last}
        if not holds:
            continue
        if (
            isinstance(node, _Scope)
            and _body_below(node, lines)
            and min(holds) >= node.body[0].lineno
        ):
            _plan_statements(node.body, lines, wide, [*scopes, node], replaced)
            continue
        headers = "".join(
            "    " * depth + ("class _:\n" if isinstance(scope, ast.ClassDef) else "def _():\n")
            for depth, scope in enumerate(scopes)
        )
        items = _exploded_items(node, lines)
        if items and all(any(a <= n <= b for a, b in items) for n in holds):
            # A list or call laid out one item per line with a trailing comma (the table of
            # routes, say): black keeps that layout and formats each item on its own, so
            # only the items that hold a wide line need it, each inside a copy of the
            # statement's opening and closing lines.
            opening, closing = headers + lines[first - 1], lines[last - 1]
            pieces: dict[int, tuple[int, str]] = {}
            for a, b in items:
                if any(a <= n <= b for n in holds):
                    text = _black_inside(opening, "".join(lines[a - 1 : b]), closing)
                    if text is None:
                        break
                    pieces[a] = (b, text)
            else:
                replaced.update(pieces)
                continue
        statement = "".join(lines[first - 1 : last])
        text = _black_inside(headers, statement, "")
        if text is None:
            raise ValueError(f"black changed the stand-in headers around line {first}")
        replaced[first] = (last, text)


def _exploded_items(node: ast.stmt, lines: list[str]) -> list[tuple[int, int]] | None:
    """The line spans of the items of a statement laid out as

        opening line ending in `[` or `(`
            one item per line or lines, each ending in a comma
        `]` or `)` alone

    (a `return`, an assignment or an expression of a list, tuple or call), else None."""
    if not isinstance(node, ast.Return | ast.Assign | ast.AnnAssign | ast.Expr):
        return None
    value = node.value
    items: list[ast.expr | ast.keyword]
    if isinstance(value, ast.List | ast.Tuple):
        items = list(value.elts)
    elif isinstance(value, ast.Call):
        items = [*value.args, *value.keywords]
    else:
        return None
    last = node.end_lineno or node.lineno
    if (
        not items
        or not lines[node.lineno - 1].rstrip().endswith(("[", "("))
        or lines[last - 1].strip() not in ("]", ")")
    ):
        return None
    spans: list[tuple[int, int]] = []
    previous = node.lineno
    for item in sorted(items, key=lambda item: (item.lineno, item.col_offset)):
        start, end = item.lineno, item.end_lineno or item.lineno
        if (
            start <= previous
            or lines[start - 1][: item.col_offset].strip()
            or not lines[end - 1].rstrip().endswith(",")
        ):
            return None
        spans.append((start, end))
        previous = end
    return spans if previous == last - 1 else None


def _black_inside(prefix: str, text: str, suffix: str) -> str | None:
    """`text` formatted by black between `prefix` and `suffix`, or None when black
    changed the prefix or the suffix too."""
    formatted = _black(prefix + text + suffix)
    if not formatted.startswith(prefix) or not formatted.endswith(suffix):
        return None
    return formatted[len(prefix) : len(formatted) - len(suffix)]


def _body_below(node: _Scope, lines: list[str]) -> bool:
    """Whether the body starts on a line of its own (not `def f(): ...`)."""
    first = node.body[0]
    return not lines[first.lineno - 1][: first.col_offset].strip()


def _black(source: str) -> str:
    import black

    try:
        return black.format_str(source, mode=_mode())
    except black.parsing.InvalidInput as exc:
        raise ValueError(str(exc)) from exc


def _mode() -> black.Mode:
    import black
    from black.mode import TargetVersion

    return black.Mode(target_versions={TargetVersion.PY311}, line_length=LINE_LENGTH)
