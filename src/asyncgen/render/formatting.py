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
- source that no template wrote (datamodel-code-generator's models) is formatted class by
  class (`_black_models`): a class whose every line is in a form that black leaves alone
  is kept as it is, any other class is formatted by black on its own. Black's cost grows
  faster than the file (2 s for 1,000 small models, 7 s for 3,000), and most models are
  in black's layout already.

tests/test_generated.py checks that every file generated from every document in the
corpus is exactly what isort and black make of it.
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
import sys
from typing import TYPE_CHECKING

from asyncgen import cache

if TYPE_CHECKING:
    import black
    import isort

LINE_LENGTH = 88

# Bumped whenever the formatting rules change, so cached results of older rules miss.
RULES = "2"


def format_python(
    path: str,
    source: str,
    package: str,
    *,
    whole: bool = False,
    models: bool = False,
    imports_sorted: bool = False,
    classes_formatted: bool = False,
) -> str:
    """Imports sorted (isort, black profile) and code formatted (black), cached.

    `whole` formats the whole file with black; `models` formats datamodel-code-generator's
    module class by class; otherwise only the top-level statements holding a line that is
    too long for black's taste are formatted. `imports_sorted` says that the template
    writes its imports in isort's order: a file without a wide line is then returned as
    it is (a handler stub: sorting and caching a thousand of them cost a second).
    `classes_formatted` says that the classes of a models module are formatted already
    (see `format_model_classes`): only its imports are left to format.
    """
    if (
        imports_sorted
        and package not in sys.stdlib_module_names  # isort would group it with `logging`
        and all(_width(line) <= LINE_LENGTH for line in source.split("\n"))
    ):
        return source
    entry = cache.key(
        "format",
        RULES,
        ("models-classes" if classes_formatted else "models") if models else str(whole),
        cache.tool_version("black"),
        cache.tool_version("isort"),
        package,
        source,
    )
    cached = cache.get("format", entry)
    if cached is not None:
        return cached
    try:
        if models:
            formatted = _black_models(source, package, classes_formatted)
        else:
            sorted_source = _isort(source, package)
            formatted = _black(sorted_source) if whole else _black_where_needed(sorted_source)
    except (SyntaxError, ValueError) as exc:  # a template bug, never the user's fault
        raise RuntimeError(f"generated {path} is not valid Python: {exc}") from exc
    cache.put("format", entry, formatted)
    return formatted


def _isort(source: str, package: str) -> str:
    """`source` with its imports sorted.

    isort's time grows with every line it reads, import or not, and a generated module
    of a large document has thousands of lines after a dozen imports: so only its head
    goes through isort, down to the first statement after the top-level imports (which
    goes along, so that isort sets the blank lines before it). A module with an import
    further down is sorted whole.
    """
    import isort

    # Spec text in a docstring or comment may spell isort's own directives (a
    # description reading "isort: skip_file" makes isort refuse the file): isort never
    # sees them.
    source, marker = _hide_directives(source)
    config = _isort_config(package)
    split = _import_head(source)
    if split is None:
        done = isort.code(source, config=config)
    else:
        head, first, rest = split
        done = isort.code(f"{head}{first}\n", config=config)
        if done.endswith(f"\n{first}\n"):
            done = done[: -len(first) - 1] + first + rest
        else:  # not expected: sort it all
            done = isort.code(source, config=config)
    return done if marker is None else done.replace(marker, _DIRECTIVE)


#: What starts every isort directive (`isort: skip_file`, `isort:skip`, `isort: off`).
_DIRECTIVE = "isort:"


def _hide_directives(source: str) -> tuple[str, str | None]:
    """`source` with each `isort:` replaced by a marker that occurs nowhere in it, and
    the marker (None when there was nothing to hide)."""
    if _DIRECTIVE not in source:
        return source, None
    marker = next(f"{chr(code)}sort:" for code in range(0xE000, 0xF900) if chr(code) not in source)
    return source.replace(_DIRECTIVE, marker), marker


#: A line that starts an import statement, at any indentation.
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+\S+[ \t]+import|import)[ \t(\\]", re.MULTILINE)


def _import_head(source: str) -> tuple[str, str, str] | None:
    """(everything before the first statement after the top-level imports, that
    statement's first line, the rest from its line end); None when there is no such
    statement, no import before it, or an import after it."""
    lines = source.split("\n")
    open_parens = 0
    continued = False
    docstring: str | None = None
    imports = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if docstring is not None:
            if docstring in stripped:
                docstring = None
        elif open_parens or continued:
            open_parens += line.count("(") - line.count(")")
            continued = stripped.endswith("\\")
        elif not stripped or stripped.startswith("#"):
            pass
        elif not imports and stripped[:3] in ('"""', "'''"):
            if stripped.count(stripped[:3]) == 1:
                docstring = stripped[:3]
        elif _IMPORT.match(line) and not line[0].isspace():
            imports = True
            open_parens = line.count("(") - line.count(")")
            continued = stripped.endswith("\\")
        else:
            rest = "\n" + "\n".join(lines[index + 1 :])
            if not imports or line[0].isspace() or _IMPORT.search(rest):
                return None
            head = "\n".join(lines[:index])
            return (f"{head}\n" if index else ""), line, rest
    return None


@functools.cache
def _isort_config(package: str) -> isort.Config:
    """isort's settings, built once: building them costs more than sorting a small file."""
    import isort

    return isort.Config(profile="black", known_first_party=[package], line_length=LINE_LENGTH)


def _width(line: str) -> int:
    """An upper bound of the width black measures: a wide character counts two."""
    if line.isascii():
        return len(line)
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


# -- the models ----------------------------------------------------------------------


def format_model_classes(source: str, tree: ast.Module | None = None) -> str:
    """A models module (whose syntax tree may be given) with its classes formatted as
    `format_python(models=True)` formats them, class by class; its imports are left to
    be sorted once the modules of several parts are joined (see `models._joined`)."""
    return _black_models(source, "", tree=tree, sort_imports=False)


def _black_models(
    source: str,
    package: str,
    classes_formatted: bool = False,
    *,
    tree: ast.Module | None = None,
    sort_imports: bool = True,
) -> str:
    """What isort and black make of a module of top-level classes (the models), with black
    run only on the classes that need it.

    Between two top-level classes black always puts two blank lines, and it formats each
    class on its own, so the module is cut between classes that have a blank line (and
    nothing else) between them. The part before the first cut (the imports) goes through
    isort and black; each later part is kept as it is when every line of it is in a form
    black leaves alone (`_kept_as_is`), else formatted by black on its own. Anything
    unusual (imports further down, a comment right above the first class) formats the
    whole module instead. With `classes_formatted`, the classes are taken as they are:
    only the imports before them are sorted and formatted; without `sort_imports`, the
    imports are not sorted.
    """
    if classes_formatted:
        split = _import_head(source)
        if split is not None and split[1].startswith("class "):
            head, first, rest = split
            imports = _black(_isort(head.rstrip("\n") + "\n", package))
            return f"{imports}\n\n{first}{rest}"
    lines = source.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    body = (tree or ast.parse(source)).body
    cuts = [
        node.lineno
        for previous, node in itertools.pairwise(body)
        if isinstance(previous, ast.ClassDef)
        and isinstance(node, ast.ClassDef)
        and not node.decorator_list
        and node.lineno - 1 > (previous.end_lineno or previous.lineno)
        and all(not line.strip() for line in lines[previous.end_lineno : node.lineno - 1])
    ]
    first_class = next((node for node in body if isinstance(node, ast.ClassDef)), None)
    head_end = cuts[0] - 1 if cuts else len(lines)
    rest = "".join(lines[head_end:])

    def sort(text: str) -> str:
        return _isort(text, package) if sort_imports else text

    if not cuts or first_class is None or first_class.decorator_list or _IMPORT.search(rest):
        return _black(sort(source))
    bounds = [*cuts, len(lines) + 1]
    head_nodes = body[: body.index(first_class)]
    imports_end = (head_nodes[-1].end_lineno or 0) if head_nodes else 0
    if (
        not sort_imports
        and all(isinstance(node, ast.Import | ast.ImportFrom) for node in head_nodes)
        and all(not line.strip() for line in lines[imports_end : first_class.lineno - 1])
    ):
        # The imports are merged and formatted once the parts are joined (see
        # `models._joined`): only the first class is formatted here, on its own like the
        # others (black lays out a class alike whatever imports come before it).
        parts = ["".join(lines[:imports_end])] if imports_end else []
        bounds = [first_class.lineno, *bounds]
    else:
        parts = [_black(sort("".join(lines[:head_end])))]
    for_black: list[int] = []
    for start, end in itertools.pairwise(bounds):
        chunk = lines[start - 1 : end - 1]
        while chunk and not chunk[-1].strip():
            chunk.pop()
        kept = _kept_as_is(chunk)
        if kept is None:
            for_black.append(len(parts))
            kept = "".join(chunk)
        parts.append(kept)
    for index, formatted in zip(
        for_black, _black_each([parts[index] for index in for_black]), strict=True
    ):
        parts[index] = formatted
    return "\n\n".join(parts)


#: At most this many chunks go to black in one call: its time per class grows with the
#: size of a call (about 6 ms a class at 100-150 classes, 9-10 ms at 3,000).
BLACK_BATCH = 100


def _black_each(chunks: list[str]) -> list[str]:
    """What black makes of each of `chunks` (top-level statements, each starting with a
    class), in few calls: black costs about ten milliseconds a call beside its time per
    line. The chunks go to black between marker statements, where the result is cut."""
    if len(chunks) > BLACK_BATCH:
        return [
            text
            for start in range(0, len(chunks), BLACK_BATCH)
            for text in _black_each(chunks[start : start + BLACK_BATCH])
        ]
    if len(chunks) < 2:
        return [_black(chunk) for chunk in chunks]
    marker = "_asyncgen_cut"
    while any(marker in chunk for chunk in chunks):
        marker += "_"
    cut = re.compile(rf"\n+{marker} = None\n+")
    pieces = cut.split(_black(f"\n\n\n{marker} = None\n\n\n".join(chunks)))
    if len(pieces) != len(chunks):  # not expected: one call each
        return [_black(chunk) for chunk in chunks]
    return [piece.strip("\n") + "\n" for piece in pieces]


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_CLASS_LINE = re.compile(rf"class {_NAME}\({_NAME}(\[{_NAME}(\.{_NAME})*\])?\):\n")
_CONFIG_OPEN = "    model_config = ConfigDict(\n"
#: A setting of `model_config` black leaves alone, but for the quotes of a string, which
#: it makes double (`extra='forbid'`, as datamodel-code-generator writes it).
_CONFIG_ITEM = re.compile(rf"        {_NAME}=(True|False|None|-?[0-9]+|\"\w+\"|'\w+'),\n", re.ASCII)
_CONFIG_CLOSE = "    )\n"
_FIELD = re.compile(rf"    ({_NAME}): (.+)\n")
_QUOTES = '    """\n'
#: A string literal without a prefix, quotes inside or escapes black rewrites (the hex
#: digits of `\\x`, `\\u`, `\\U` and `\\N` escapes): black only makes its quotes double.
_STRING_BODY = r"""{quote}(?:[^'"\\\n]|\\[^xuUN'"\n])*{quote}"""
_STRING = _STRING_BODY.format(quote='"') + "|" + _STRING_BODY.format(quote="'")
#: The pieces of an annotation and default black leaves as they are: names and dotted
#: names, strings (single-quoted ones black makes double-quoted: see `_double_quoted`),
#: plain numbers, brackets, parentheses, `, `, ` | `, a keyword argument's `=` and a
#: default's ` = `.
_TOKEN = re.compile(
    rf"{_NAME}(\.{_NAME})*" + f"|{_STRING}" + r"|-?[0-9]+(\.[0-9]+)?(?![0-9A-Za-z_.])"
    r"|\[|\]|\(|\)|, | \| |=| = "
)


def _kept_as_is(chunk: list[str]) -> str | None:
    """The text of `chunk` (one top-level class) as black would write it when every line
    is in a form black leaves alone (a blank line added after the class docstring, as
    black does), else None."""
    if not chunk or not _CLASS_LINE.fullmatch(chunk[0]):
        return None
    out = [chunk[0]]
    index = 1
    previous = "class"
    while index < len(chunk):
        line = chunk[index]
        if line == _QUOTES and previous in ("class", "field"):
            close = index + 1
            while close < len(chunk) and chunk[close] != _QUOTES:
                if not _docstring_line(chunk[close]):
                    return None
                close += 1
            if close == len(chunk) or close == index + 1:
                return None
            out.extend(chunk[index : close + 1])
            if previous == "class" and close + 1 < len(chunk):
                out.append("\n")  # black's blank line after a class docstring
            previous = "docstring"
            index = close + 1
        elif line == _CONFIG_OPEN and previous in ("class", "docstring", "field"):
            close = index + 1
            while close < len(chunk) and _CONFIG_ITEM.fullmatch(chunk[close]):
                close += 1
            if close == index + 1 or close == len(chunk) or chunk[close] != _CONFIG_CLOSE:
                return None
            out.extend(line.replace("'", '"') for line in chunk[index : close + 1])
            previous = "field"
            index = close + 1
        elif (stable := _black_stable_field(line) or _black_stable_member(line)) is not None:
            out.append(stable)
            previous = "field"
            index += 1
        else:
            return None
    if previous == "class":
        return None
    return "".join(out)


#: An enum member as datamodel-code-generator writes it: a name and a string or a number.
_MEMBER = re.compile(rf"(    {_NAME} = )({_STRING}|-?[0-9]+(?:\.[0-9]+)?)\n")


def _black_stable_member(line: str) -> str | None:
    """`    NAME = 'value'` (an enum member) as black writes it, when it is no wider than
    black's limit: its string double-quoted; else None."""
    match = _MEMBER.fullmatch(line)
    if match is None or _width(line.rstrip()) > LINE_LENGTH:
        return None
    return match.group(1) + _double_quoted(match.group(2)) + "\n"


def _double_quoted(token: str) -> str:
    """A `_TOKEN` as black writes it: a single-quoted string (one without quotes inside,
    see `_STRING_BODY`) gets double quotes."""
    return f'"{token[1:-1]}"' if token[0] == "'" else token


def _docstring_line(line: str) -> bool:
    """A line inside an attribute or class docstring that black leaves as it is."""
    if line == "\n":
        return True
    text = line[4:-1]
    return (
        line.startswith("    ")
        and line.endswith("\n")
        and bool(text)
        and not text[0].isspace()
        and not text[-1].isspace()
        and '"' not in text
        and "\\" not in text
        and text.isprintable()
        and _width(line.rstrip()) <= LINE_LENGTH
    )


def _black_stable_field(line: str) -> str | None:
    """`    name: annotation` or `    name: annotation = default` as black writes it, when
    it is made of `_TOKEN`s only, each where black would leave it, brackets balanced and
    never empty, and no wider than black's limit (black only making the quotes of
    strings double); else None."""
    match = _FIELD.fullmatch(line)
    if match is None or _width(line.rstrip()) > LINE_LENGTH:
        return None
    text = match.group(2)
    position = 0
    previous = "start"
    stack: list[str] = []
    defaults = 0
    pieces: list[str] = []
    while position < len(text):
        token = _TOKEN.match(text, position)
        if token is None:
            return None
        piece, position = token.group(0), token.end()
        pieces.append(_double_quoted(piece))
        atom = piece[0].isalnum() or piece[0] in "_\"'-"
        if atom:
            if previous not in ("start", "[", "(", ", ", " | ", "=", " = "):
                return None
        elif piece in ("[", "("):
            subscript_or_call = previous[0].isalpha() or previous[0] == "_"
            # A list display (`examples=['a']`) where a value goes; never parentheses
            # there, which black may find redundant and drop.
            display = piece == "[" and previous in ("[", "(", ", ", "=", " = ")
            if previous == "start" or not (subscript_or_call or display):
                return None
            stack.append(piece)
        elif piece in ("]", ")"):
            # Never empty, never a magic trailing comma.
            if not stack or stack.pop() != {"]": "[", ")": "("}[piece]:
                return None
            if previous in ("[", "(", ", ", " | ", "="):
                return None
        elif piece == "=":  # a keyword argument
            if not stack or stack[-1] != "(" or not previous.isidentifier():
                return None
        elif piece == " = ":  # the default
            if stack or defaults or previous in ("start", ", ", " | "):
                return None
            defaults += 1
        elif previous in ("start", "[", "(", ", ", " | ", "=", " = "):  # `, ` or ` | `
            return None
        previous = piece
    if stack or previous in ("start", ", ", " | ", "=", " = "):
        return None
    return line[: match.start(2)] + "".join(pieces) + "\n"
