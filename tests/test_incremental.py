"""What a second generation reuses: models made in parts, each cached, and the checks of
payload schemas remembered once found sound. Reuse must never change a result: the same
models, the same problems, at the same places (the document's structure, checked at
once by jsonschema-rs, is checked again every time)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from asyncgen.load import RefPolicy, load_document
from asyncgen.render import models
from asyncgen.validate import check_payload_schemas, check_structure


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ASYNCGEN_CACHE_DIR", str(folder))
    monkeypatch.delenv("ASYNCGEN_NO_CACHE", raising=False)
    return folder


def reading(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "string"}, "value": {"type": "number"}, **(extra or {})},
    }


def many_schemas(count: int) -> dict[str, Any]:
    return {f"Reading{i}": reading() for i in range(count)}


def classes(source: str) -> list[str]:
    return [node.name for node in ast.parse(source).body if isinstance(node, ast.ClassDef)]


def counting_generate(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """Record the `$defs` of each call of datamodel-code-generator (all in this process)."""
    monkeypatch.setenv("ASYNCGEN_JOBS", "1")
    calls: list[set[str]] = []
    real = models._generate

    def generate(document: dict[str, Any], *args: Any, **kwargs: Any) -> str:
        calls.append(set(document["$defs"]))
        return real(document, *args, **kwargs)

    monkeypatch.setattr(models, "_generate", generate)
    return calls


def test_a_large_document_is_made_in_parts_that_give_the_models_of_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schemas = many_schemas(300)
    names = {name: name for name in schemas}
    calls = counting_generate(monkeypatch)
    parted = models.generate_models(schemas, names, set(names))
    assert len(calls) > 1, "300 schemas are made in more than one part"
    monkeypatch.setenv("ASYNCGEN_NO_CACHE", "1")
    monkeypatch.setattr(models, "PART_THRESHOLD", 10**6)
    whole = models.generate_models(schemas, names, set(names))
    assert classes(parted) == list(names), "every model, in document order"
    assert sorted(classes(parted)) == sorted(classes(whole))
    compile(parted, "models.py", "exec")
    assert parted.startswith("from __future__ import annotations\n\n")


def test_changing_one_schema_of_many_remakes_only_its_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schemas = many_schemas(300)
    names = {name: name for name in schemas}
    before = models.generate_models(schemas, names, set(names))
    calls = counting_generate(monkeypatch)
    changed = {**schemas, "Reading150": reading({"note": {"type": "string"}})}
    after = models.generate_models(changed, names, set(names))
    assert len(calls) == 1 and "Reading150" in calls[0]
    assert len(calls[0]) < 300
    assert "note: str | None = None" in after and "note:" not in before
    assert classes(after) == classes(before)


def test_parts_made_by_two_processes_give_what_one_process_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schemas = many_schemas(400)
    names = {name: name for name in schemas}
    monkeypatch.setenv("ASYNCGEN_NO_CACHE", "1")
    spawned: list[int] = []
    real = models.Background.__init__

    def background(self: Any, *args: Any, **kwargs: Any) -> None:
        spawned.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(models.Background, "__init__", background)
    two = models.generate_models(schemas, names, set(names))
    assert spawned, "400 uncached schemas are made by two processes"
    monkeypatch.setenv("ASYNCGEN_JOBS", "1")
    one = models.generate_models(schemas, names, set(names))
    assert two == one


def test_parts_whose_models_would_share_a_name_are_made_together() -> None:
    # Each schema inlines an object under `location`: the generator names those models
    # `Location`, `Location1`, ... within one call; made apart, both would be `Location`.
    schemas = {
        f"Reading{i}": reading(
            {"location": {"type": "object", "properties": {"lat": {"type": "number"}}}}
        )
        for i in range(200)
    }
    names = {name: name for name in schemas}
    assert len(models._parts(schemas, names)) > 1
    source = models.generate_models(schemas, names, set(names))
    defined = classes(source)
    assert len(defined) == len(set(defined)), "no model defined twice"
    assert set(names) <= set(defined)
    compile(source, "models.py", "exec")


def test_schemas_joined_by_refs_stay_in_one_part() -> None:
    schemas: dict[str, Any] = many_schemas(200)
    schemas["Reading199"] = {"type": "object", "properties": {"a": {"$ref": "#/$defs/Reading0"}}}
    names = {name: name for name in schemas}
    parts = models._parts(schemas, names)
    together = [part for part in parts if "Reading0" in part]
    assert len(together) == 1 and "Reading199" in together[0]


DOCUMENT = """\
asyncapi: 3.0.0
info:
  title: Cached checks
  version: 1.0.0
channels:
  first:
    address: first
    messages:
      reading:
        payload:
          $ref: '#/components/schemas/Reading'
  second:
    address: second
    messages:
      reading:
        payload:
          type: object
          properties:
            value:
              type: {kind}
operations:
  receiveFirst:
    action: receive
    channel:
      $ref: '#/channels/first'
components:
  schemas:
    Reading:
      type: object
      properties:
        id:
          type: string
"""


def problems_of(path: Path, kind: str, bogus: str = "") -> list[tuple[str, int, str]]:
    text = DOCUMENT.replace("{kind}", kind)
    if bogus:
        text = text.replace("    address: second\n", f"    address: second\n    {bogus}: 1\n")
    path.write_text(text, encoding="utf-8")
    doc = load_document(path, RefPolicy())
    found = [*check_structure(doc), *check_payload_schemas(doc)]
    return [(p.location.pointer, p.location.line, p.message) for p in found]


def test_an_entry_valid_once_is_checked_again_once_changed(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    assert problems_of(spec, "number") == []
    broken = problems_of(spec, "number", bogus="bogus")
    assert [(pointer, line) for pointer, line, _ in broken] == [("/channels/second/bogus", 14)]
    assert "unknown field `bogus`" in broken[0][2]
    # Reported the same with the cache warm, and again sound once fixed.
    assert problems_of(spec, "number", bogus="bogus") == broken
    assert problems_of(spec, "number") == []


def test_a_payload_schema_found_sound_is_checked_again_once_changed(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    assert problems_of(spec, "number") == []
    broken = problems_of(spec, "numeric")
    assert [pointer for pointer, _, _ in broken] == [
        "/channels/second/messages/reading/payload/properties/value/type"
    ]
    assert problems_of(spec, "numeric") == broken


def test_the_checks_give_the_same_problems_without_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "spec.yaml"
    problems_of(spec, "number")
    warm = problems_of(spec, "numeric", bogus="bogus")
    monkeypatch.setenv("ASYNCGEN_NO_CACHE", "1")
    assert problems_of(spec, "numeric", bogus="bogus") == warm
    assert len(warm) == 2


def varied_schemas(count: int) -> dict[str, Any]:
    """Schemas of many shapes, some with lines black has to wrap."""
    long = "A description long enough that the field holding it is wider than black allows."
    shapes: list[dict[str, Any]] = [
        reading(),
        reading({"unit": {"type": "string", "enum": ["celsius", "kelvin"], "description": long}}),
        reading({"tags": {"type": "array", "items": {"type": "string", "maxLength": 8}}}),
        {
            "type": "object",
            "description": long + " " + long,
            "properties": {"at": {"type": "string", "format": "date-time"}},
        },
        reading(
            {
                "limits": {
                    "type": "object",
                    "properties": {"low": {"type": "integer", "minimum": -40, "description": long}},
                }
            }
        ),
        {"type": "string", "enum": ["on", "off"]},
    ]
    return {f"Shape{i}": shapes[i % len(shapes)] for i in range(count)}


def test_a_module_made_in_parts_is_formatted_as_the_whole_module_would_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each part's classes are formatted where the part is made; the joined module only
    # gets its imports sorted. The result must be what formatting the whole joined
    # module gives.
    from asyncgen.render import formatting

    schemas = varied_schemas(300)
    names = {name: name for name in schemas}
    path = "src/pkg/_generated/models.py"
    made = models.formatted_models(schemas, names, set(names), "pkg")
    monkeypatch.setenv("ASYNCGEN_NO_CACHE", "1")
    monkeypatch.setattr(models, "format_model_classes", lambda source, tree=None: source)
    raw = models.generate_models(schemas, names, set(names))
    whole = formatting.format_python(path, raw, "pkg", models=True)
    assert made == whole
    assert made != raw, "some classes needed black"
    assert len(classes(made)) >= 300


def test_models_made_in_one_piece_are_formatted_by_the_process_that_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small document's models come back as the generator wrote them (the asking
    # process formats them, with black already loaded for its templates); a module made
    # in parts comes back formatted. Either way the result is `formatted_models`'.
    monkeypatch.setenv("ASYNCGEN_NO_CACHE", "1")
    # A large module in one piece (every schema reached from the first) is formatted
    # where it is made, like one made in parts.
    linked = varied_schemas(80)
    linked["Shape0"] = {
        "type": "object",
        "properties": {name.lower(): {"$ref": f"#/$defs/{name}"} for name in list(linked)[1:]},
    }
    for schemas, formatted_there in (
        (varied_schemas(3), False),
        (varied_schemas(300), True),
        (linked, True),
    ):
        names = {name: name for name in schemas}
        made = models.made_models(schemas, names, set(names), "pkg")
        assert made[1] is formatted_there
        finished = models.finish_models(made, "pkg")
        assert finished == models.formatted_models(schemas, names, set(names), "pkg")
        if formatted_there:
            assert finished == made[0]
        else:
            assert made[0] == models.generate_models(schemas, names, set(names))
            assert finished != made[0], "a line needed black"
    assert len(models._parts(linked, {name: name for name in linked})) == 1


def test_cached_models_are_made_again_when_black_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Parts are cached with their classes formatted: a new black (or new formatting
    # rules) must not reuse them, or a warm cache and a cold one would give two layouts.
    from asyncgen import cache

    schemas = many_schemas(300)
    names = {name: name for name in schemas}
    calls = counting_generate(monkeypatch)
    models.formatted_models(schemas, names, set(names), "pkg")
    made = len(calls)
    models.formatted_models(schemas, names, set(names), "pkg")
    assert len(calls) == made, "the cache answers while nothing changed"
    real = cache.tool_version
    monkeypatch.setattr(
        cache, "tool_version", lambda name: "99.0" if name == "black" else real(name)
    )
    models.formatted_models(schemas, names, set(names), "pkg")
    assert len(calls) == 2 * made
