"""Stage 1, `$ref`s: pointers, relative files, the folder policy, loops, recursive schemas."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from asyncgen.errors import SpecError
from asyncgen.load import Document, Ref, RefPolicy, load_document
from asyncgen.model import build_api
from asyncgen.render.models import generate_models

SHARED_SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def resolve(doc: Document, pointer: str) -> tuple[Any, Ref]:
    return doc.resolve_at(Ref(doc.root.path, pointer))


def only_problem(error: pytest.ExceptionInfo[SpecError]) -> tuple[Path, int, str]:
    assert len(error.value.problems) == 1
    problem = error.value.problems[0]
    return problem.location.file, problem.location.line, problem.message


# -- same document -----------------------------------------------------------------------

ESCAPES_YAML = """\
refs:
  slash: {$ref: '#/components/schemas/a~1b'}
  tilde: {$ref: '#/components/schemas/t~0x'}
  both: {$ref: '#/components/schemas/~0~1'}
  tilde_one: {$ref: '#/components/schemas/~01'}
  percent: {$ref: '#/components/schemas/with%20space'}
  percent_tilde: {$ref: '#/components/schemas/t%7E0x'}
  index: {$ref: '#/components/list/1'}
components:
  schemas:
    a/b: {type: string}
    t~x: {type: integer}
    ~/: {type: boolean}
    ~1: {type: 'null'}
    with space: {type: number}
  list: [first, second]
"""


@pytest.mark.parametrize(
    ("member", "expected", "pointer"),
    [
        ("slash", {"type": "string"}, "/components/schemas/a~1b"),
        ("tilde", {"type": "integer"}, "/components/schemas/t~0x"),
        ("both", {"type": "boolean"}, "/components/schemas/~0~1"),
        ("tilde_one", {"type": "null"}, "/components/schemas/~01"),
        ("percent", {"type": "number"}, "/components/schemas/with space"),
        ("percent_tilde", {"type": "integer"}, "/components/schemas/t~0x"),
        ("index", "second", "/components/list/1"),
    ],
)
def test_same_document_refs_with_escapes_resolve(
    tmp_path: Path, member: str, expected: Any, pointer: str
) -> None:
    doc = load_document(write(tmp_path / "spec.yaml", ESCAPES_YAML))
    value, at = resolve(doc, f"/refs/{member}")
    assert value == expected
    assert at == Ref(doc.root.path, pointer)


def test_array_index_with_leading_zero_is_not_found(tmp_path: Path) -> None:
    text = "a: {$ref: '#/list/01'}\nlist: [x, y]\n"
    doc = load_document(write(tmp_path / "spec.yaml", text))
    with pytest.raises(SpecError) as error:
        resolve(doc, "/a")
    assert "not found" in only_problem(error)[2]


# -- relative files ----------------------------------------------------------------------


@pytest.fixture
def multi_file(tmp_path: Path) -> Document:
    write(
        tmp_path / "spec.yaml",
        "info: {title: t}\n"
        "one: {$ref: 'other.yaml#/x'}\n"
        "whole: {$ref: 'sub/dir.yaml'}\n"
        "chain: {$ref: 'sub/dir.yaml#/back'}\n"
        "dotted: {$ref: './sub/../other.yaml#/x/deep'}\n",
    )
    write(tmp_path / "other.yaml", "# other file\nx:\n  deep: 1\n  more: 2\n")
    write(tmp_path / "sub" / "dir.yaml", "kind: sub\nback:\n  $ref: '../other.yaml#/x'\n")
    return load_document(tmp_path / "spec.yaml")


def test_ref_into_another_file_resolves(multi_file: Document, tmp_path: Path) -> None:
    value, at = resolve(multi_file, "/one")
    assert value == {"deep": 1, "more": 2}
    assert at == Ref((tmp_path / "other.yaml").resolve(), "/x")


def test_ref_to_a_whole_file_in_a_subfolder_resolves(multi_file: Document, tmp_path: Path) -> None:
    value, at = resolve(multi_file, "/whole")
    assert value["kind"] == "sub"
    assert at == Ref((tmp_path / "sub" / "dir.yaml").resolve(), "")


def test_ref_chain_across_two_files_resolves_relative_to_each_file(
    multi_file: Document, tmp_path: Path
) -> None:
    value, at = resolve(multi_file, "/chain")
    assert value == {"deep": 1, "more": 2}
    assert at.file == (tmp_path / "other.yaml").resolve()
    assert at.pointer == "/x"


def test_dotted_relative_path_resolves(multi_file: Document) -> None:
    value, at = resolve(multi_file, "/dotted")
    assert value == 1
    assert at.pointer == "/x/deep"


def test_location_of_a_target_names_the_other_file(multi_file: Document, tmp_path: Path) -> None:
    _, at = resolve(multi_file, "/one")
    location = multi_file.location(at.child("more"))
    assert location.file == (tmp_path / "other.yaml").resolve()
    assert (location.line, location.column) == (4, 9)
    key = multi_file.key_location(at)
    assert (key.file, key.line, key.column) == (location.file, 2, 1)


# -- the folder policy -------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    write(tmp_path / "common" / "schemas.yaml", "Thing: {type: string}\n")
    return write(
        tmp_path / "service" / "spec.yaml",
        "info: {title: t}\nthing: {$ref: '../common/schemas.yaml#/Thing'}\n",
    )


def test_ref_leaving_the_spec_folder_is_refused(outside: Path, tmp_path: Path) -> None:
    doc = load_document(outside)
    with pytest.raises(SpecError) as error:
        resolve(doc, "/thing")
    file, line, message = only_problem(error)
    assert file == outside.resolve()
    assert line == 2
    assert "--refs-root" in message
    assert str(tmp_path.resolve()) in message


@pytest.mark.parametrize("marker", ["dir", "file"])
def test_refs_may_reach_any_file_of_the_enclosing_repository(tmp_path: Path, marker: str) -> None:
    # `.git` is a folder in a clone and a file in a worktree or a submodule.
    repo = tmp_path / "repo"
    if marker == "dir":
        (repo / ".git").mkdir(parents=True)
    else:
        write(repo / ".git", "gitdir: /elsewhere\n")
    write(repo / "common" / "schemas.yaml", "Thing: {type: string}\n")
    spec = write(
        repo / "services" / "main" / "asyncapi.yaml",
        "info: {title: t}\nthing: {$ref: '../../common/schemas.yaml#/Thing'}\n",
    )
    assert resolve(load_document(spec), "/thing")[0] == {"type": "string"}


def test_refs_leaving_the_enclosing_repository_are_refused(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    write(tmp_path / "common.yaml", "Thing: {type: string}\n")
    spec = write(
        tmp_path / "repo" / "asyncapi.yaml",
        "info: {title: t}\nthing: {$ref: '../common.yaml#/Thing'}\n",
    )
    with pytest.raises(SpecError) as error:
        resolve(load_document(spec), "/thing")
    _, line, message = only_problem(error)
    assert line == 2
    assert f"leaves the folder {(tmp_path / 'repo').resolve()}" in message


def test_ref_leaving_the_spec_folder_is_allowed_under_a_wider_root(
    outside: Path, tmp_path: Path
) -> None:
    doc = load_document(outside, RefPolicy(root=tmp_path))
    value, at = resolve(doc, "/thing")
    assert value == {"type": "string"}
    assert at.file == (tmp_path / "common" / "schemas.yaml").resolve()


def test_ref_leaving_the_spec_folder_is_allowed_when_outside_is_allowed(outside: Path) -> None:
    doc = load_document(outside, RefPolicy(allow_outside=True))
    assert resolve(doc, "/thing")[0] == {"type": "string"}


def test_ref_leaving_the_wider_root_is_still_refused(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere.yaml", "x: 1\n")
    spec = write(
        tmp_path / "root" / "service" / "spec.yaml", "a: {$ref: '../../elsewhere.yaml#/x'}\n"
    )
    doc = load_document(spec, RefPolicy(root=tmp_path / "root"))
    with pytest.raises(SpecError) as error:
        resolve(doc, "/a")
    assert "--refs-root" in only_problem(error)[2]


@pytest.mark.parametrize(
    "url", ["http://example.com/schemas.yaml#/Thing", "https://example.com/s.json"]
)
@pytest.mark.parametrize(
    "policy", [RefPolicy(), RefPolicy(allow_outside=True)], ids=["default", "outside"]
)
def test_remote_refs_are_refused(tmp_path: Path, url: str, policy: RefPolicy) -> None:
    spec = write(tmp_path / "spec.yaml", f"info: {{title: t}}\nthing:\n  $ref: '{url}'\n")
    doc = load_document(spec, policy)
    with pytest.raises(SpecError) as error:
        resolve(doc, "/thing")
    file, line, message = only_problem(error)
    assert (file, line) == (spec.resolve(), 3)
    assert "remote" in message


# -- broken refs -------------------------------------------------------------------------


def test_ref_to_a_missing_file_is_a_located_spec_error(tmp_path: Path) -> None:
    spec = write(tmp_path / "spec.yaml", "info: {title: t}\nthing:\n  $ref: 'gone.yaml#/x'\n")
    doc = load_document(spec)
    with pytest.raises(SpecError) as error:
        resolve(doc, "/thing")
    file, line, message = only_problem(error)
    assert (file, line) == (spec.resolve(), 3)
    assert "missing file" in message and "gone.yaml" in message


def test_ref_to_a_missing_pointer_is_a_located_spec_error(tmp_path: Path) -> None:
    write(tmp_path / "other.yaml", "x: 1\n")
    spec = write(
        tmp_path / "spec.yaml",
        "a:\n  $ref: '#/components/nothing'\nb:\n  $ref: 'other.yaml#/y'\n",
    )
    doc = load_document(spec)
    with pytest.raises(SpecError) as error:
        resolve(doc, "/a")
    file, line, message = only_problem(error)
    assert (file, line) == (spec.resolve(), 2)
    assert "not found" in message and "#/components/nothing" in message
    with pytest.raises(SpecError) as error:
        resolve(doc, "/b")
    file, line, message = only_problem(error)
    assert (file, line) == (spec.resolve(), 4)
    assert "other.yaml#/y" in message


def test_ref_into_an_invalid_file_reports_that_file(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.yaml", "x: [1, 2\n")
    spec = write(tmp_path / "spec.yaml", "a: {$ref: 'broken.yaml#/x'}\n")
    doc = load_document(spec)
    with pytest.raises(SpecError) as error:
        resolve(doc, "/a")
    file, line, message = only_problem(error)
    assert file == broken.resolve()
    assert line == 2
    assert message.startswith("invalid YAML")


def test_ref_loop_is_a_located_spec_error(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "spec.yaml",
        "components:\n  schemas:\n"
        "    a:\n      $ref: '#/components/schemas/b'\n"
        "    b:\n      $ref: '#/components/schemas/a'\n",
    )
    doc = load_document(spec)
    with pytest.raises(SpecError) as error:
        resolve(doc, "/components/schemas/a")
    file, line, message = only_problem(error)
    assert (file, line) == (spec.resolve(), 4)
    assert "loop" in message
    assert "#/components/schemas/b" in message


def test_ref_loop_across_files_is_a_spec_error(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", "b: {$ref: 'spec.yaml#/a'}\n")
    spec = write(tmp_path / "spec.yaml", "a: {$ref: 'b.yaml#/b'}\n")
    doc = load_document(spec)
    with pytest.raises(SpecError) as error:
        resolve(doc, "/a")
    assert "loop" in only_problem(error)[2]


def test_self_ref_is_a_loop(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path / "spec.yaml", "a: {$ref: '#/a'}\n"))
    with pytest.raises(SpecError) as error:
        resolve(doc, "/a")
    assert "loop" in only_problem(error)[2]


def test_non_string_ref_is_a_spec_error(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path / "spec.yaml", "a: {$ref: 42}\n"))
    with pytest.raises(SpecError) as error:
        resolve(doc, "/a")
    assert "must be a string" in only_problem(error)[2]


# -- the shared social-media examples ----------------------------------------------------


def social_media(version: str) -> Path:
    folder = SHARED_SPECS / version / "social-media"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")
    return folder


@pytest.mark.parametrize("version", ["2.6.0", "3.0.0"])
def test_social_media_services_load_and_take_payloads_from_common(version: str) -> None:
    folder = social_media(version)
    common = yaml.safe_load((folder / "common" / "schemas.yaml").read_text())
    services = sorted(folder.glob("*/asyncapi.yaml"))
    assert len(services) >= 4
    for spec in services:
        doc = load_document(spec, RefPolicy(root=folder))
        api, _warnings = build_api(doc)
        assert api.operations, spec
        assert (folder / "common" / "schemas.yaml").resolve() in doc.files
        for operation in api.operations:
            assert operation.messages, (spec, operation.key)
            for message in operation.messages:
                assert message.payload is not None
                schema = api.schemas[message.payload]
                # The payload is one of common/schemas.yaml's, bundled.
                assert schema["title"] in common, (spec, message.name)
                original = common[schema["title"]]
                assert schema["properties"].keys() == original["properties"].keys()
                comment_id = schema["properties"]["commentId"]["allOf"][0]["$ref"]
                assert re.fullmatch(r"#/\$defs/\w+", comment_id)
                assert api.schemas[comment_id.removeprefix("#/$defs/")] == common["commentId"]


@pytest.mark.parametrize("version", ["2.6.0", "3.0.0"])
def test_social_media_service_refs_leave_their_folder_by_default(version: str) -> None:
    folder = social_media(version)
    doc = load_document(folder / "backend" / "asyncapi.yaml")
    with pytest.raises(SpecError) as error:
        build_api(doc)
    assert "--refs-root" in str(error.value)


# -- recursive schemas -------------------------------------------------------------------

RECURSIVE_SPEC = """\
asyncapi: 3.0.0
info: {title: Trees, version: '1'}
channels:
  tree:
    address: tree
    messages:
      tree:
        payload: {$ref: '#/components/schemas/Node'}
      pair:
        payload: {$ref: '#/components/schemas/A'}
operations:
  onTree:
    action: receive
    channel: {$ref: '#/channels/tree'}
components:
  schemas:
    Node:
      type: object
      required: [name]
      properties:
        name: {type: string}
        children:
          type: array
          items: {$ref: '#/components/schemas/Node'}
    A:
      type: object
      properties:
        label: {type: string}
        b: {$ref: 'b.yaml#/components/schemas/B'}
"""

B_FILE = """\
components:
  schemas:
    B:
      type: object
      properties:
        count: {type: integer}
        a: {$ref: 'spec.yaml#/components/schemas/A'}
"""


def pascal_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", name))


def recursive_api(tmp_path: Path) -> Any:
    write(tmp_path / "b.yaml", B_FILE)
    api, _ = build_api(load_document(write(tmp_path / "spec.yaml", RECURSIVE_SPEC)))
    return api


@pytest.fixture
def recursive_models(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    api = recursive_api(tmp_path)
    source = generate_models(api.schemas, {name: pascal_case(name) for name in api.schemas})
    namespace: dict[str, Any] = {"__name__": "recursive_models_under_test"}
    exec(compile(source, "<generated models>", "exec"), namespace)
    return source, namespace


def test_recursive_schemas_are_bundled_with_internal_refs(tmp_path: Path) -> None:
    schemas = recursive_api(tmp_path).schemas
    assert {"Node", "A", "B"} <= set(schemas)
    assert schemas["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert schemas["A"]["properties"]["b"] == {"$ref": "#/$defs/B"}
    assert schemas["B"]["properties"]["a"] == {"$ref": "#/$defs/A"}


def test_recursive_schema_becomes_a_recursive_model(
    recursive_models: tuple[str, dict[str, Any]],
) -> None:
    source, namespace = recursive_models
    node_class = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == "Node"
    )
    annotations = [
        ast.unparse(item.annotation) for item in node_class.body if isinstance(item, ast.AnnAssign)
    ]
    assert any("list[Node]" in annotation for annotation in annotations), annotations
    node = namespace["Node"].model_validate(
        {"name": "root", "children": [{"name": "kid", "children": [{"name": "grandkid"}]}]}
    )
    assert node.children[0].children[0].name == "grandkid"
    with pytest.raises(ValueError):
        namespace["Node"].model_validate({"name": "root", "children": [{"children": []}]})


def test_mutual_recursion_across_files_becomes_models(
    recursive_models: tuple[str, dict[str, Any]],
) -> None:
    source, namespace = recursive_models
    assert re.search(r"^class A\(", source, re.MULTILINE)
    assert re.search(r"^class B\(", source, re.MULTILINE)
    a = namespace["A"].model_validate(
        {"label": "x", "b": {"count": 1, "a": {"label": "y", "b": {"count": 2}}}}
    )
    assert a.b.a.b.count == 2
    assert type(a.b.a).__name__ == "A"
