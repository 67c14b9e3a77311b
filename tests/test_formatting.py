"""Formatting only the statements that need it gives what black gives for the whole file,
on source written in black's layout apart from its long lines (what templates produce)."""

from __future__ import annotations

import black
import pytest
from black.mode import TargetVersion

from asyncgen.render.formatting import _black_where_needed

LONG = "argument_number_one, argument_number_two, argument_number_three, and_four"

CASES = {
    "top-level call": f"x = 1\n\n\nresult = compute({LONG})\n",
    "method in a class": (
        'class A:\n    """Doc."""\n\n    def f(self) -> int:\n'
        f"        return compute({LONG})\n\n    def g(self) -> None:\n        pass\n"
    ),
    "decorated async def": (
        "import functools\n\n\n@functools.cache\nasync def f() -> None:\n"
        f"    await compute({LONG})\n"
    ),
    "one item of a table": (
        "def routes() -> list[object]:\n    return [\n        Route(\n"
        '            operation="a",\n        ),\n        Route(\n'
        f"            operation=compute({LONG}),\n        ),\n    ]\n"
    ),
    "a line separator inside an earlier string": (
        f'x = "a\u2028b"\n\n\ndef f() -> None:\n    return compute({LONG})\n'
    ),
    "inside an if block": f"if True:\n    value = compute({LONG})\nelse:\n    value = 0\n",
    "a wide docstring": 'def f() -> None:\n    """' + "word " * 20 + '"""\n',
    "a one-line body": f"class P:\n    def f(self) -> int: ...\n\n\nvalue = compute({LONG})\n",
}


@pytest.mark.parametrize("source", CASES.values(), ids=CASES.keys())
def test_the_same_as_black_over_the_whole_file(source: str) -> None:
    whole = black.format_str(source, mode=black.Mode(target_versions={TargetVersion.PY311}))
    assert whole != source, "the case must give black something to do"
    assert _black_where_needed(source) == whole


def test_source_without_wide_lines_is_left_as_it_is() -> None:
    source = "x = [1, 2, 3]\n"
    assert _black_where_needed(source) is source
