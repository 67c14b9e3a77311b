"""Stage 1, reading one file: scalar typing, positions, refusals, merge keys."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from asyncgen.errors import SpecError
from asyncgen.load import Document, Ref, load_document, read_source


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def only_problem(error: pytest.ExceptionInfo[SpecError]) -> tuple[int, int, str]:
    """(line, column, message) of the single problem a SpecError carries."""
    assert len(error.value.problems) == 1
    problem = error.value.problems[0]
    return problem.location.line, problem.location.column, problem.message


# -- scalars: YAML 1.2 core schema ------------------------------------------------------


def test_yaml_1_1_booleans_stay_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "spec.yaml",
        "enum: [on, off, yes, no, y, n, On, OFF, Yes, NO, Y, N]\nswitch: on\nanswer: no\n",
    )
    data = read_source(path).data
    assert data["enum"] == ["on", "off", "yes", "no", "y", "n", "On", "OFF", "Yes", "NO", "Y", "N"]
    assert data["switch"] == "on"
    assert data["answer"] == "no"


def test_unquoted_dates_and_timestamps_stay_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "spec.yaml",
        "date: 2024-01-15\nstamp: 2024-01-15T10:30:00Z\nspaced: 2024-01-15 10:30:00\n",
    )
    data = read_source(path).data
    assert data == {
        "date": "2024-01-15",
        "stamp": "2024-01-15T10:30:00Z",
        "spaced": "2024-01-15 10:30:00",
    }


def test_core_schema_scalars_are_typed_as_in_yaml_1_2(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "spec.yaml",
        "t: true\nT: True\nf: false\nnull_word: null\ntilde: ~\nempty:\n"
        "int: 42\nneg: -7\nhex: 0x1F\noct: 0o17\nfloat: 3.5\nexp: 1e3\n"
        "inf: .inf\nneg_inf: -.Inf\nnan: .nan\n"
        "sexagesimal: 1:30\nunderscored: 1_000\nold_octal_looks_int: 017\nquoted: '42'\n",
    )
    data = read_source(path).data
    assert data["t"] is True and data["T"] is True and data["f"] is False
    assert data["null_word"] is None and data["tilde"] is None and data["empty"] is None
    assert data["int"] == 42 and type(data["int"]) is int
    assert data["neg"] == -7
    assert data["hex"] == 31 and data["oct"] == 15
    assert data["float"] == 3.5 and type(data["float"]) is float
    assert data["exp"] == 1000.0 and type(data["exp"]) is float
    assert data["inf"] == math.inf and data["neg_inf"] == -math.inf
    assert math.isnan(data["nan"])
    # YAML 1.1 readings that 1.2 dropped.
    assert data["sexagesimal"] == "1:30"
    assert data["underscored"] == "1_000"
    assert data["old_octal_looks_int"] == 17
    assert data["quoted"] == "42"


def test_non_string_keys_keep_their_source_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "spec.yaml",
        "true: a\n1e3: b\n0x10: c\n200: d\nnull: e\n1.50: f\n",
    )
    data = read_source(path).data
    assert list(data) == ["true", "1e3", "0x10", "200", "null", "1.50"]


def test_keys_that_differ_only_in_quoting_are_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "responses:\n  200: a\n  '200': b\n")
    with pytest.raises(SpecError) as error:
        read_source(path)
    assert only_problem(error) == (3, 3, "duplicate key '200'")


def test_explicit_tag_that_does_not_fit_is_a_spec_error(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "a: 1\nb: !!int twelve\n")
    with pytest.raises(SpecError) as error:
        read_source(path)
    line, column, message = only_problem(error)
    assert (line, column) == (2, 4)
    assert "twelve" in message and "!!int" in message
    assert error.value.problems[0].location.pointer == "/b"


# -- positions ---------------------------------------------------------------------------

SMALL_YAML = """\
asyncapi: 3.0.0
info:
  title: Demo
  version: '1.0'
channels:
  ping:
    address: ping/{id}
    messages: [a, b]
"""


def test_value_positions_are_recorded(tmp_path: Path) -> None:
    source = read_source(write(tmp_path, "spec.yaml", SMALL_YAML))

    def at(pointer: str) -> tuple[int, int]:
        location = source.location(pointer)
        assert location.pointer == pointer
        return location.line, location.column

    assert at("/asyncapi") == (1, 11)
    assert at("/info/title") == (3, 10)
    assert at("/info/version") == (4, 12)
    assert at("/channels/ping/address") == (7, 14)
    assert at("/channels/ping/messages/1") == (8, 19)
    # A block mapping's value starts at its first key.
    assert at("/info") == (3, 3)


def test_unknown_pointer_falls_back_to_nearest_ancestor(tmp_path: Path) -> None:
    source = read_source(write(tmp_path, "spec.yaml", SMALL_YAML))
    location = source.location("/channels/ping/nothing/here")
    assert location.pointer == "/channels/ping/nothing/here"
    assert (location.line, location.column) == (7, 5)


def test_key_positions_point_at_the_member_key(tmp_path: Path) -> None:
    source = read_source(write(tmp_path, "spec.yaml", SMALL_YAML))
    assert source.key_positions["/info"] == (2, 1)
    info = source.key_location("/info")
    assert (info.line, info.column, info.pointer) == (2, 1, "/info")
    assert source.key_location("/channels/ping/address").line == 7
    assert source.key_location("/channels/ping/address").column == 5
    # Array items have no key: their value position is used.
    item = source.key_location("/channels/ping/messages/0")
    assert (item.line, item.column) == (8, 16)
    # The value location is unchanged by the key positions.
    assert source.location("/info").line == 3


def test_document_key_location_points_at_the_key(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "spec.yaml", SMALL_YAML))
    assert isinstance(doc, Document)
    ref = Ref(doc.root.path, "/info")
    assert (doc.key_location(ref).line, doc.key_location(ref).column) == (2, 1)
    assert doc.location(ref).line == 3


TAB_JSON = '{\n\t"info": {\n\t\t"title": "x",\n\t\t"tags": [1, 2]\n\t}\n}\n'


def test_tab_indented_json_loads_with_positions(tmp_path: Path) -> None:
    source = read_source(write(tmp_path, "spec.json", TAB_JSON))
    assert source.data == {"info": {"title": "x", "tags": [1, 2]}}
    # A tab counts as one column.
    title = source.location("/info/title")
    assert (title.line, title.column) == (3, 12)
    second_tag = source.location("/info/tags/1")
    assert (second_tag.line, second_tag.column) == (4, 15)
    assert source.key_positions["/info"] == (2, 2)


def test_json_keeps_strings_and_numbers_as_json_does(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.json", '{"a": "on", "b": "2024-01-15", "c": 1e3, "d": 10}')
    assert read_source(path).data == {"a": "on", "b": "2024-01-15", "c": 1000.0, "d": 10}


# -- refusals ----------------------------------------------------------------------------


def test_invalid_yaml_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "a: b\n  c: d\n")
    with pytest.raises(SpecError) as error:
        read_source(path)
    line, column, message = only_problem(error)
    assert (line, column) == (2, 4)
    assert message.startswith("invalid YAML: mapping values are not allowed")
    assert error.value.problems[0].location.file == path


def test_unterminated_yaml_flow_sequence_reports_where_it_went_wrong(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "a:\n  - x\n  y: [1, 2\n")
    with pytest.raises(SpecError) as error:
        read_source(path)
    line, _column, message = only_problem(error)
    assert line == 3
    assert message.startswith("invalid YAML: ")
    assert "\n" not in message


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.json", '{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(SpecError) as error:
        read_source(path)
    assert only_problem(error) == (4, 1, "invalid JSON: Expecting value")


@pytest.mark.parametrize("name", ["spec.yaml", "spec.json"])
@pytest.mark.parametrize("text", ["", "   \n\n"])
def test_empty_file_is_refused(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as error:
        read_source(path)
    assert "empty" in only_problem(error)[2]


def test_comment_only_yaml_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "# only a comment\n")
    with pytest.raises(SpecError) as error:
        read_source(path)
    assert only_problem(error)[2] == "the file is empty"


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"asyncapi: 3.0.0\n\x00\x01\x02")
    with pytest.raises(SpecError) as error:
        read_source(path)
    assert "binary" in only_problem(error)[2]


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes("info:\n  title: café\n".encode("latin-1"))
    with pytest.raises(SpecError) as error:
        read_source(path)
    message = only_problem(error)[2]
    assert "UTF-8" in message and "byte 18" in message


def test_control_character_is_refused_with_its_position(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "a: b\nc: d\x01\n")
    with pytest.raises(SpecError) as error:
        read_source(path)
    line, column, message = only_problem(error)
    assert (line, column) == (2, 5)
    assert "U+0001" in message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as error:
        read_source(tmp_path / "nope.yaml")
    assert "cannot read the file" in only_problem(error)[2]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("list.yaml", "- a\n- b\n"),
        ("scalar.yaml", "hello\n"),
        ("null.json", "null"),
        ("array.json", "[1, 2]"),
    ],
)
def test_non_mapping_root_is_refused(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(SpecError) as error:
        load_document(write(tmp_path, name, text))
    assert "must be a mapping" in only_problem(error)[2]


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 "lol"']
    for level in range(1, 10):
        aliases = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    path = write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n")
    # Expanded, the document would hold 10**9 strings: refused before, or it never ends
    # (pytest-timeout fails it then).
    with pytest.raises(SpecError) as error:
        read_source(path)
    line, _column, message = only_problem(error)
    assert "aliases" in message
    assert 1 < line <= 10


def test_merge_key_bomb_is_not_expanded(tmp_path: Path) -> None:
    # Each level merges the previous one ten times: cheap, because merged keys collapse.
    lines = ["m0: &m0 {k0: 0}"]
    for level in range(1, 12):
        merged = ", ".join([f"*m{level - 1}"] * 10)
        lines.append(f"m{level}: &m{level} {{<<: [{merged}], k{level}: {level}}}")
    path = write(tmp_path, "merge-bomb.yaml", "\n".join(lines) + "\n")
    started = time.monotonic()
    data = read_source(path).data
    assert time.monotonic() - started < 5
    assert data["m11"] == {f"k{i}": i for i in range(12)}


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "a: &loop\n  b: *loop\n")
    with pytest.raises(SpecError) as error:
        read_source(path)
    assert "alias" in only_problem(error)[2]


@pytest.mark.parametrize("name", ["deep.yaml", "deep.json"])
def test_deeply_nested_document_is_refused_without_recursion_error(
    tmp_path: Path, name: str
) -> None:
    path = write(tmp_path, name, "[" * 10_000)
    started = time.monotonic()
    with pytest.raises(SpecError) as error:
        read_source(path)
    assert time.monotonic() - started < 5
    assert "nested" in only_problem(error)[2]


@pytest.mark.parametrize("name", ["deep.yaml", "deep.json"])
def test_valid_but_too_deep_document_is_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "[" * 400 + "]" * 400)
    with pytest.raises(SpecError) as error:
        read_source(path)
    line, column, message = only_problem(error)
    assert message == "the document is nested deeper than 256 levels"
    assert (line, column) == (1, 258)


def test_block_nesting_is_limited_too(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "- " * 5_000 + "x\n")
    with pytest.raises(SpecError) as error:
        read_source(path)
    assert "nested deeper" in only_problem(error)[2]


def test_nesting_within_the_limit_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "[" * 200 + "1" + "]" * 200)
    data = read_source(path).data
    for _ in range(200):
        data = data[0]
    assert data == 1


def test_duplicate_yaml_keys_are_refused_at_the_second_key(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "info:\n  title: a\n  version: '1'\n  title: b\n")
    with pytest.raises(SpecError) as error:
        read_source(path)
    assert only_problem(error) == (4, 3, "duplicate key 'title'")
    assert error.value.problems[0].location.pointer == "/info/title"


def test_duplicate_json_keys_are_refused_at_their_real_position(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.json", '{\n  "info": {\n\t"title": "a",\n\t"title": "b"\n  }\n}\n')
    with pytest.raises(SpecError) as error:
        read_source(path)
    assert only_problem(error) == (4, 2, "duplicate key 'title'")
    assert error.value.problems[0].location.pointer == "/info/title"


# -- merge keys --------------------------------------------------------------------------

MERGE_YAML = """\
base: &base
  qos: 0
  retain: false
after:
  <<: *base
  qos: 1
before:
  qos: 2
  <<: *base
"""


def test_explicit_key_after_merge_wins(tmp_path: Path) -> None:
    data = read_source(write(tmp_path, "spec.yaml", MERGE_YAML)).data
    assert data["after"] == {"qos": 1, "retain": False}


def test_explicit_key_before_merge_wins(tmp_path: Path) -> None:
    data = read_source(write(tmp_path, "spec.yaml", MERGE_YAML)).data
    assert data["before"] == {"qos": 2, "retain": False}


def test_merged_and_overriding_values_keep_their_own_positions(tmp_path: Path) -> None:
    source = read_source(write(tmp_path, "spec.yaml", MERGE_YAML))
    assert source.location("/after/qos").line == 6
    assert source.location("/after/retain").line == 3
    assert source.key_location("/before/qos").line == 8


def test_first_of_several_merged_mappings_wins(tmp_path: Path) -> None:
    text = "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n"
    data = read_source(write(tmp_path, "spec.yaml", text)).data
    assert data["c"] == {"x": 1, "y": 2, "z": 3}


def test_duplicate_explicit_keys_beside_a_merge_are_still_an_error(tmp_path: Path) -> None:
    text = "base: &b {qos: 0}\nop:\n  qos: 1\n  <<: *b\n  qos: 2\n"
    with pytest.raises(SpecError) as error:
        read_source(write(tmp_path, "spec.yaml", text))
    assert only_problem(error) == (5, 3, "duplicate key 'qos'")


def test_merge_of_a_non_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as error:
        read_source(write(tmp_path, "spec.yaml", "a:\n  <<: 5\n"))
    assert "merge key" in only_problem(error)[2]


def test_quoted_merge_key_is_an_ordinary_key(tmp_path: Path) -> None:
    data = read_source(write(tmp_path, "spec.yaml", "a: {'<<': 1, b: 2}\n")).data
    assert data == {"a": {"<<": 1, "b": 2}}


# -- nothing escapes but SpecError ------------------------------------------------------

NASTY = [
    ("multi.yaml", "a: 1\n---\nb: 2\n"),
    ("undefined-alias.yaml", "a: *nope\n"),
    ("complex-key.yaml", "? [a, b]\n: c\n"),
    ("mapping-key.yaml", "? {a: 1}\n: c\n"),
    ("bad-bool.yaml", "a: !!bool yes\n"),
    ("bad-float.yaml", "a: !!float abc\n"),
    ("recursive-merge.yaml", "a: &a\n  <<: *a\n"),
    ("tab-indent.yaml", "a:\n\tb: 1\n"),
    ("bad-escape.yaml", 'a: "\\q"\n'),
    ("trailing.json", '{"a": 1} x'),
    ("deep-mapping.yaml", "{a: " * 3000),
    ("deep-mapping.json", '{"a": ' * 3000),
    ("lone-surrogate.json", '{"a": "\\ud800"}'),
]


@pytest.mark.parametrize(("name", "text"), NASTY, ids=[name for name, _ in NASTY])
def test_bad_input_raises_only_spec_error(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    try:
        load_document(path)
    except SpecError as error:
        assert error.problems
        assert all(problem.location.file == path for problem in error.problems)
        assert all(problem.location.line >= 1 for problem in error.problems)


# -- the one-pass reader of plain documents ---------------------------------------------

_VARIED = """\
asyncapi: 3.0.0
info: {title: "Quoted: title", version: '1.0', x-flow: [1, 2.5, -3, 0x1F, 0o17, .inf, -.Inf, .nan]}
plain keys:
  true: yes
  1e3: no
  null: ~
  "": empty key
  'a/b~c': escaped pointer
explicit: !!str 123
other: !custom tagged text
floats: [1., .5, 1e-3, 6.02E+23]
bools: [true, False, TRUE, on]
nulls: [null, Null, ~, ]
nested:
  - - deep
    - {a: [b, {c: d}]}
  - |
    literal
    block
  - >
    folded
    text
unicode: "caf\\u00e9 \\U0001F600 \\t"
"""


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)  # type: ignore[call-overload]
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


def test_plain_documents_are_read_in_one_pass_as_the_node_graph_reads_them(
    tmp_path: Path,
) -> None:
    """The same data, value positions and key positions, on every YAML document at hand
    without anchors or merge keys, and on one of many kinds of scalars."""
    from asyncgen.load import source

    if source._CParser is None:
        pytest.skip("PyYAML was built without libyaml")
    varied = tmp_path / "varied.yaml"
    varied.write_text(_VARIED, encoding="utf-8")
    repo = Path(__file__).resolve().parents[1]
    paths = [varied, *sorted((repo / "tests" / "broken").glob("*.y*ml"))]
    paths += sorted((repo / "examples").rglob("*.yaml"))
    shared = repo.parent / "shared"
    if shared.is_dir():
        paths += sorted(p for p in shared.rglob("*") if p.suffix in (".yaml", ".yml"))
    read = 0
    for path in paths:
        text = path.read_bytes().decode("utf-8-sig", "replace")
        if "&" in text or "<<" in text:
            continue
        fast = source._read_plain(path, text)
        if fast is None:
            continue
        node = source._compose(path, text)
        assert node is not None
        builder = source._Builder(path)
        data = builder.run(node, anchors=False)
        assert _same(fast.data, data), path
        assert fast.positions == builder.positions, path
        assert fast.key_positions == builder.key_positions, path
        read += 1
    assert read >= (20 if shared.is_dir() else 5)


def test_a_merge_key_spelled_as_a_tag_is_merged_as_before(tmp_path: Path) -> None:
    from asyncgen.load import source

    text = "a:\n  !!merge x:\n    b: 1\n  c: 2\n"
    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")
    assert source._read_plain(spec, text) is None
    assert read_source(spec).data == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("a: *nowhere\n", "undefined alias"),
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("a: !!int twelve\n", "cannot be read as !!int"),
        ("? [a, b]\n: c\n", "mapping keys must be strings"),
        ("a:" + " [" * 300 + " ]" * 300 + "\n", "nested deeper than 256"),
        ("a:\n  !!merge x: 5\n", "merge key (<<) needs a mapping"),
    ],
    ids=["duplicate", "alias", "documents", "tag", "key", "deep", "merge-tag"],
)
def test_what_the_one_pass_reader_leaves_is_refused_as_before(
    tmp_path: Path, text: str, phrase: str
) -> None:
    from asyncgen.load import source

    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")
    assert source._read_plain(spec, text) is None
    with pytest.raises(SpecError) as raised:
        read_source(spec)
    assert any(phrase in problem.message for problem in raised.value.problems), [
        p.message for p in raised.value.problems
    ]
