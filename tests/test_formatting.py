"""Formatting only the statements that need it gives what black gives for the whole file,
on source written in black's layout apart from its long lines (what templates produce);
the models, formatted class by class, are what isort and black make of the whole module;
the handler stubs, whose imports the template writes in isort's order, are too."""

from __future__ import annotations

from types import SimpleNamespace

import black
import pytest
from black.mode import TargetVersion

from asyncgen.render.formatting import (
    _black_models,
    _black_stable_field,
    _black_where_needed,
    format_python,
)
from asyncgen.render.project import environment

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


# -- the models: class by class ------------------------------------------------------

MODEL_HEAD = (
    "from __future__ import annotations\n"
    "from typing import Annotated, Literal\n"
    "from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel\n"
    "from enum import Enum\n\n\n"
)
MODEL_CASES = {
    "plain fields": (
        "class A(BaseModel):\n    model_config = ConfigDict(\n        populate_by_name=True,\n"
        "    )\n    id: str\n    at: AwareDatetime | None = None\n"
        '    kind: Literal["a", "b"] = "a"\n'
        '    n: Annotated[int | None, Field(alias="N", ge=-1, le=10)] = None\n'
    ),
    "class and attribute docstrings": (
        'class A(BaseModel):\n    """\n    What A is.\n\n    More of it.\n    """\n'
        '    x: int\n    """\n    The x.\n    """\n'
    ),
    "a class holding only its docstring": 'class A(BaseModel):\n    """\n    Only this.\n    """\n',
    "single quotes": "class A(BaseModel):\n    x: Annotated[int, Field(alias='X')]\n",
    "a line too wide": (
        "class A(BaseModel):\n    a_rather_long_field_name: Annotated[str | None, "
        'Field(alias="aRatherLongFieldName", description="and a long description")] = None\n'
    ),
    "a docstring with quotes and indentation": (
        'class A(BaseModel):\n    x: int\n    """\n    Say "hi".\n        indented\n    """\n'
    ),
    "an enum": 'class Kind(Enum):\n    A = "a"\n    B = "b"\n',
    "an enum in single quotes": "class Kind2(StrEnum):\n    A = 'a'\n    B_C = 'b\\\\c'\n",
    "an enum of numbers": "class Level(IntEnum):\n    LOW = 1\n    HIGH = -2\n    MID = 1.5\n",
    "an enum with escapes black rewrites": "class Hex(Enum):\n    A = '\\xAB'\n    B = 'it\\'s'\n",
    "an enum member too wide": ("class Wide(Enum):\n    A = '" + "a" * 100 + "'\n"),
    "a config and fields in single quotes": (
        "class A(BaseModel):\n    model_config = ConfigDict(\n        extra='forbid',\n"
        "        populate_by_name=True,\n    )\n"
        "    a: Annotated[str, Field(alias='aId', pattern='^[0-9]+\\\\.[0-9]+$')]\n"
    ),
    "a root model": "class Ids(RootModel[list[str]]):\n    root: list[str]\n",
    "a magic trailing comma": "class A(BaseModel):\n    x: dict[str, int,]\n",
    "an empty config": "class A(BaseModel):\n    model_config = ConfigDict(\n    )\n    x: int\n",
    "statements after the classes": "class A(BaseModel):\n    x: int\n\n\nA.model_rebuild()\n",
    "a comment between classes": (
        "class A(BaseModel):\n    x: int\n# between\nclass C(BaseModel):\n    y: int\n"
    ),
    "a decorated class": "@final\nclass A(BaseModel):\n    x: int\n",
    "no blank line between classes": (
        "class A(BaseModel):\n    x: int\nclass C(BaseModel):\n    y: int\n"
    ),
    "redundant parentheses": "class A(BaseModel):\n    x: int = (1)\n    y: float = 1E5\n",
    "an import further down": "class A(BaseModel):\n    x: int\n\n\nimport os\n",
}


def _isort_and_black(source: str) -> str:
    import isort

    sorted_source = isort.code(source, profile="black", known_first_party=["pkg"])
    return black.format_str(sorted_source, mode=black.Mode(target_versions={TargetVersion.PY311}))


@pytest.mark.parametrize("body", MODEL_CASES.values(), ids=MODEL_CASES.keys())
def test_models_class_by_class_as_isort_and_black_make_them(body: str) -> None:
    # Each case sits between two plain models, so that it is cut off on both sides.
    plain = "class P{}(BaseModel):\n    value: float\n"
    source = MODEL_HEAD + plain.format(0) + "\n\n" + body + "\n\n" + plain.format(1)
    assert _black_models(source, "pkg") == _isort_and_black(source)


@pytest.mark.parametrize(
    "line",
    [
        "    x: int | None = None\n",
        '    y: Annotated[str, Field(alias="y", ge=-1)] = "a"\n',
        '    e: Literal["a", "b"] | None = None\n',
        "    z: a.b.C\n",
        "    a: Annotated[int, Field(alias='a')]\n",
        "    b: int = (1)\n",
        "    c: dict[str, int,]\n",
        "    d: int =1\n",
        "    f: float = 1E5\n",
        "    g: list[ str ]\n",
        "    h: int = 0x1F\n",
        "    i: int = 1_000\n",
        "    j: Annotated[int, Field(ge = 1)]\n",
        "    k: Annotated[int, Field()]\n",
        "    m: int = -1\n",
        "    n: str = 'x'\n",
        '    o: str = "a\\tb"\n',
        "    p: Annotated[str, Field(alias='pId', pattern='^[0-9]+\\\\.[0-9]+$')]\n",
        "    q: str = 'it\\'s'\n",
        "    r: str = 'say \"hi\"'\n",
        "    s: str = '\\xAB\\u00E9'\n",
        '    t: str = "\\xab"\n',
        "    u: str = '\\\\'\n",
        "    v: str = u'x'\n",
        "    w: Literal['a', 'b'] = 'a'\n",
        "    x: Annotated[str, Field(examples=['a', 'b'])]\n",
        "    y: list[int] = [1, [2, 3]]\n",
        "    z: Annotated[int, Field(examples=[])]\n",
        "    aa: list[int] = [1,]\n",
        "    ab: tuple[int, int] = (1, 2)\n",
        "    ac: list[int] = [ 1 ]\n",
    ],
)
def test_a_field_claimed_stable_is_what_black_writes(line: str) -> None:
    source = f"class A(BaseModel):\n{line}"
    stable = _black_stable_field(line)
    if stable is not None:
        assert black.format_str(source, mode=black.Mode()) == f"class A(BaseModel):\n{stable}"


def test_single_quoted_strings_are_claimed_stable_with_double_quotes() -> None:
    # What datamodel-code-generator writes without a formatter: black would only change
    # the quotes, so the field is kept, quoted as black quotes it.
    line = "    p: Annotated[str, Field(alias='pId', pattern='^a\\\\.b$')] = 'x'\n"
    assert _black_stable_field(line) == (
        '    p: Annotated[str, Field(alias="pId", pattern="^a\\\\.b$")] = "x"\n'
    )
    assert _black_stable_field("    s: str = '\\xAB'\n") is None
    assert _black_stable_field("    e: Annotated[str, Field(examples=['a'])]\n") == (
        '    e: Annotated[str, Field(examples=["a"])]\n'
    )


# -- the handler stubs: imports written in isort's order -----------------------------


@pytest.mark.parametrize("package", ["pkg", "a_package_with_a_rather_long_name_" * 2, "logging"])
@pytest.mark.parametrize("params", ["", "A_Params_Class_Name_That_Is_Long_Enough_To_Wrap"])
def test_a_handler_stub_is_what_isort_and_black_make_of_it(package: str, params: str) -> None:
    import isort

    op = SimpleNamespace(
        key="receiveIt",
        summary="",
        description="",
        module="receive_it",
        uses_models=True,
        message_type="models.Reading",
        reply_type=None,
        reply_messages=[],
        reply_example=None,
        channel=SimpleNamespace(
            address="things/{id}", params=[1] if params else [], params_class=params
        ),
    )
    ctx = SimpleNamespace(package=package, address_word="topic")
    source = environment().get_template("common/handler.py.jinja").render(ctx=ctx, op=op)
    formatted = format_python("x.py", source, package, imports_sorted=True)
    sorted_source = isort.code(formatted, profile="black", known_first_party=[package])
    mode = black.Mode(target_versions={TargetVersion.PY311})
    assert black.format_str(sorted_source, mode=mode) == formatted


def test_models_in_black_layout_are_kept_without_black(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncgen.render import formatting

    cases = ("plain fields", "an enum", "a line too wide", "an enum in single quotes")
    source = MODEL_HEAD + "\n\n".join(MODEL_CASES[name] for name in cases)
    expected = _isort_and_black(source)
    calls: list[str] = []
    real = formatting._black
    monkeypatch.setattr(formatting, "_black", lambda text: calls.append(text) or real(text))
    assert _black_models(source, "pkg") == expected
    # Black sees the imports and the class with a wide line (not in the kept forms),
    # not the plain model or the enums.
    assert len(calls) == 2 and calls[0].startswith("from __future__")
    assert calls[1].startswith("class A") and "a_rather_long_field_name" in calls[1]


def test_classes_for_black_go_to_it_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncgen.render import formatting

    wide = MODEL_CASES["a line too wide"]
    source = MODEL_HEAD + "\n\n".join(wide.replace("class A", f"class A{i}") for i in range(5))
    calls: list[str] = []
    real = formatting._black
    monkeypatch.setattr(formatting, "_black", lambda text: calls.append(text) or real(text))
    monkeypatch.setattr(formatting, "BLACK_BATCH", 2)
    assert _black_models(source, "pkg") == _isort_and_black(source)
    # The imports with the first class, then the other four in batches of two.
    assert [text.count("class ") for text in calls] == [1, 2, 2]


#: Module shapes formatted whole (see `_black_models`): a part's imports go along.
FORMATTED_WHOLE = {
    "statements after the classes",
    "a decorated class",
    "an import further down",
}


@pytest.mark.parametrize("case", MODEL_CASES)
def test_a_part_of_the_models_has_its_classes_formatted_and_its_imports_left_for_the_join(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A part made in a worker: whatever its first class, the classes come out as black
    # makes them, and the imports as they were written (they are merged, sorted and
    # formatted once, when the parts are joined), black never given them.
    from asyncgen.render import formatting, models

    source = MODEL_HEAD + MODEL_CASES[case] + "\n\n" + "class P(BaseModel):\n    value: float\n"
    calls: list[str] = []
    real = formatting._black
    monkeypatch.setattr(formatting, "_black", lambda text: calls.append(text) or real(text))
    part = formatting.format_model_classes(source)
    formatted_in_part = list(calls)
    joined = models._joined([part])
    assert format_python("m.py", joined, "pkg", models=True, classes_formatted=True) == (
        _isort_and_black(source)
    )
    if case not in FORMATTED_WHOLE:
        assert part.startswith(MODEL_HEAD.rstrip("\n") + "\n")
        assert not any(text.startswith("from ") for text in formatted_in_part)


_HEADS = [
    # docstring, unsorted imports, a comment, then code
    '"""Doc.\n\nMore.\n"""\n\nimport sys\nfrom b import y, x\nimport os\n'
    "# about C\nclass C:\n    pass\n",
    # parenthesised import, one blank line, a function
    "from z import (\n    b,\n    a,\n)\nfrom __future__ import annotations\n"
    "\ndef f() -> None:\n    pass\n",
    # an import further down: the whole module is sorted
    "import sys\nimport os\n\nX = 1\nif X:\n    import json, abc\n",
    # no code after the imports, and no imports at all
    "import sys\nimport os\n",
    "X = 1\n",
    # the first statement an assignment after a single-line docstring
    '"""One line."""\nfrom typing import TypeAlias, Any\nfrom . import b, a\n'
    "N: TypeAlias = int\n\n\nclass D:\n    pass\n",
]


@pytest.mark.parametrize("source", _HEADS)
def test_sorting_only_the_import_head_gives_what_isort_gives_for_the_whole_module(
    source: str,
) -> None:
    import isort

    from asyncgen.render.formatting import _isort, _isort_config

    body = "".join(f"\n\ndef f{i}() -> int:\n    return {i}\n" for i in range(50))
    for text in (source, source + body):
        assert _isort(text, "pkg") == isort.code(text, config=_isort_config("pkg"))


@pytest.mark.parametrize(
    "text",
    ["isort: skip_file", "isort:skip_file", "isort: off", "isort: dont-add-imports"],
)
def test_isort_directives_in_spec_text_neither_stop_the_sorting_nor_change_the_text(
    text: str,
) -> None:
    import isort

    from asyncgen.render.formatting import _isort, _isort_config

    def module(words: str) -> str:
        return (
            f'"""{words}"""\n\nimport sys\nimport os\n# {words}\n\n\nX = "{words}"\n'
            f"\n\ndef f() -> None:\n    # {words}\n    pass\n"
        )

    plain = "a description"
    expected = isort.code(module(plain), config=_isort_config("pkg")).replace(plain, text)
    assert "import os\nimport sys\n" in expected
    assert _isort(module(text), "pkg") == expected
