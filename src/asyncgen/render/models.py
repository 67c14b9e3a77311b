"""Pydantic v2 models of the payload schemas, through datamodel-code-generator."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import warnings
from collections import defaultdict
from typing import Any

from asyncgen import cache
from asyncgen.errors import UnsupportedError
from asyncgen.model.keywords import walk, without_generator_keywords
from asyncgen.render.background import Background
from asyncgen.render.formatting import RULES as FORMAT_RULES
from asyncgen.render.formatting import format_model_classes, format_python

#: Names the models module imports or that would read badly as a model name.
MODEL_RESERVED = {
    "Annotated",
    "Any",
    "AwareDatetime",
    "Dict",
    "BaseModel",
    "ConfigDict",
    "Enum",
    "Field",
    "IntEnum",
    "Literal",
    "Model",
    "NaiveDatetime",
    "Optional",
    "RootModel",
    "StrEnum",
    "Union",
    "UUID",
    "AnyUrl",
    "EmailStr",
    "date",
    "datetime",
    "time",
    "timedelta",
}


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "array": (list,),
    "object": (dict,),
}


def _default_fits(schema: dict[str, Any]) -> bool:
    """Whether a schema's `default` is a value the schema itself allows."""
    default = schema["default"]
    if isinstance(schema.get("enum"), list) and default not in schema["enum"]:
        return False
    kind = schema.get("type")
    if isinstance(kind, str) and kind in _JSON_TYPES:
        if isinstance(default, bool) and kind != "boolean":
            return False
        return isinstance(default, _JSON_TYPES[kind])
    return True


def _prepared(schema: Any, names: dict[str, str]) -> Any:
    """A copy of `schema` ready for the generator.

    Refs point at class names; the generator's own keywords are left out (none may
    choose the models' imports, types or base classes; the validate stage refuses or
    warns about each); repeated enum values are written once (the generator would make
    a duplicate member of each); and defaults the schema contradicts are dropped: a
    default such as `"false"` on a boolean would become a model that fails its own type
    check, and dropping it keeps the field optional without a wrong value.
    """
    result = without_generator_keywords(schema)
    for _, item, _ in walk(result):
        ref = item.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            item["$ref"] = "#/$defs/" + names[ref[len("#/$defs/") :]]
        if isinstance(item.get("enum"), list):
            item["enum"] = _unique(item["enum"])
        _split_scalar_types(item)
        if "default" in item and not _default_fits(item):
            del item["default"]
    return result


#: The constraints of each scalar JSON type.
_CONSTRAINTS = {
    "string": ("minLength", "maxLength", "pattern"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
}
_CONSTRAINTS["integer"] = _CONSTRAINTS["number"]


def _split_scalar_types(schema: dict[str, Any]) -> None:
    """`type: [string, integer]` with constraints becomes an `anyOf` of one schema per type.

    For such a schema the generator writes `constr(...) | conint(...)`, calls that no
    type checker accepts in an annotation; for an `anyOf` it writes typed models.
    """
    kinds = schema.get("type")
    if not isinstance(kinds, list) or not all(isinstance(kind, str) for kind in kinds):
        return
    typed = [kind for kind in dict.fromkeys(kinds) if kind != "null"]
    if len(typed) < 2 or {"number", "integer"} >= set(typed):
        return
    if not set(typed) <= {*_CONSTRAINTS, "boolean"}:
        return
    present = {key for kind in typed for key in _CONSTRAINTS.get(kind, ()) if key in schema}
    if not present:
        return
    schema["anyOf"] = [
        {"type": kind, **{key: schema[key] for key in _CONSTRAINTS.get(kind, ()) if key in schema}}
        for kind in typed
    ] + ([{"type": "null"}] if "null" in kinds else [])
    for key in [*present, "type"]:
        del schema[key]


def _unique(values: list[Any]) -> list[Any]:
    """`values` without repeats, as JSON Schema compares them (1 and 1.0 are one)."""
    seen: set[tuple[str, Any]] = set()
    unique = []
    for value in values:
        if isinstance(value, bool):
            key: tuple[str, Any] = ("bool", value)
        elif isinstance(value, int | float):
            key = ("number", value)
        else:
            key = (type(value).__name__, json.dumps(value, sort_keys=True))
        if key not in seen:
            seen.add(key)
            unique.append(value)
    return unique


def bundle(schemas: dict[str, Any], class_names: dict[str, str]) -> dict[str, Any]:
    """One JSON Schema whose `$defs` are keyed by the Python class names."""
    return {
        "$defs": {
            class_names[name]: _prepared(schema, class_names)
            if isinstance(schema, dict)
            else schema
            for name, schema in schemas.items()
        }
    }


# Bumped whenever the way models are generated changes, so cached models of older rules miss.
_RULES = "8"


def generate_models(
    schemas: dict[str, Any], class_names: dict[str, str], required: set[str] | None = None
) -> str:
    """Python source of one module holding a model per schema (unformatted, but for the
    classes of a module made in parts: see `_models`).

    `required` are the class names other modules use (message payloads and headers):
    they must exist. Other schemas may be inlined into the fields that use them.
    Results are cached by the schemas, names and tool versions: the whole module, and
    each of its parts (see `_parts`), so that changing one schema of many remakes only
    its part.
    """
    return _models(schemas, class_names, required)[0]


def _models(
    schemas: dict[str, Any], class_names: dict[str, str], required: set[str] | None
) -> tuple[str, bool]:
    """`generate_models`, and whether its classes are formatted already: those of a
    module made in parts are, part by part, in the processes that make them."""
    if not schemas:
        return "from __future__ import annotations\n", False
    needed, entry = _entry(schemas, class_names, required)
    cached = cache.get("models", entry)
    if cached is not None:
        source, classes_formatted = json.loads(cached)
        return source, classes_formatted
    parts = _parts(schemas, class_names)
    if len(parts) == 1:
        made = _generate_checked(bundle(schemas, class_names), needed)[0], False
    else:
        made = _joined(_parts_generated(parts, schemas, class_names, needed)), True
    cache.put("models", entry, json.dumps(made))
    return made


def formatted_models(
    schemas: dict[str, Any], class_names: dict[str, str], required: set[str], package: str
) -> str:
    """`generate_models`, formatted as isort and black would (datamodel-code-generator's
    code is mostly, not always, in black's layout)."""
    return finish_models(made_models(schemas, class_names, required, package), package)


#: A models module and whether it is formatted already (see `made_models`).
Made = tuple[str, bool]


def made_models(
    schemas: dict[str, Any], class_names: dict[str, str], required: set[str], package: str
) -> Made:
    """`formatted_models` as far as the process making the models takes it.

    A module made in parts is formatted there: the parts' classes were formatted where
    each was made, and only the joined imports are left. A small module (of fewer than
    PART_THRESHOLD schemas) is returned as the generator wrote it, for `finish_models`
    to format in the process that asked for it: a small document's models are made
    before that process is done with its templates, and black (half of formatting a
    small module is loading it) is then not in their way.
    """
    source, classes_formatted = _models(schemas, class_names, required)
    if classes_formatted or len(schemas) >= PART_THRESHOLD:
        return _formatted(source, package, classes_formatted=classes_formatted), True
    return source, False


def finish_models(made: Made, package: str) -> str:
    """The formatted models module of `made_models`' result."""
    source, formatted = made
    return source if formatted else _formatted(source, package)


def _formatted(source: str, package: str, classes_formatted: bool = False) -> str:
    path = f"src/{package}/_generated/models.py"
    return format_python(path, source, package, models=True, classes_formatted=classes_formatted)


def import_generator() -> None:
    """Import datamodel-code-generator (most of a small document's models' time)."""
    import datamodel_code_generator.config
    import datamodel_code_generator.parser.jsonschema  # noqa: F401


def import_formatters() -> None:
    """Import what formatting the models needs."""
    import black  # noqa: F401
    import isort  # noqa: F401


#: The warm-up of the process that makes the models (see `background.prepare`): the
#: generator first, then the formatters, which a small document's models, formatted
#: by the process that asked for them, do not need.
PRELOAD = (import_generator, import_formatters)


def models_cached(
    schemas: dict[str, Any], class_names: dict[str, str], required: set[str] | None = None
) -> bool:
    """Whether `generate_models` will answer from the cache (or has nothing to do)."""
    return not schemas or cache.get("models", _entry(schemas, class_names, required)[1]) is not None


def _entry(
    schemas: dict[str, Any], class_names: dict[str, str], required: set[str] | None
) -> tuple[set[str], str]:
    """The classes the models of `schemas` must include, and their cache key.

    The key is made of what `bundle` makes the generator's document from (the schemas
    and their class names, which a schema's `$ref`s name too: they stay within its
    part), so that the cache is asked without bundling.
    """
    needed = set(class_names.values()) if required is None else required
    entry = cache.key(
        "models",
        _RULES,
        cache.tool_version("datamodel-code-generator"),
        # The classes of parts are cached formatted (see `format_model_classes`).
        cache.tool_version("black"),
        FORMAT_RULES,
        json.dumps(schemas, sort_keys=True),
        json.dumps({name: class_names[name] for name in schemas}, sort_keys=True),
        json.dumps(sorted(needed)),
    )
    return needed, entry


def _generate_checked(document: dict[str, Any], needed: set[str]) -> tuple[str, ast.Module]:
    """The models module of `document` (which must define the classes `needed`) and its
    syntax tree."""
    collapse = True
    source = _generate(document, collapse=collapse)
    tree = _parsed(source)
    if needed - _classes(tree):
        # Collapsing inlines root models that fields refer to; when a message payload is
        # one of them, generate without collapsing so that the payload keeps its class.
        collapse = False
        source = _generate(document, collapse=collapse)
        tree = _parsed(source)
    if crowded := _protected_namespace_classes(tree):
        # A payload property named like `model_dump` becomes the field `model_dump_`,
        # which pydantic warns about on import (its protected `model_` namespace): those
        # classes opt out of the namespace, as pydantic's warning suggests.
        source = _generate(document, collapse=collapse, unprotected=crowded)
        tree = _parsed(source)
    _dependencies(tree)  # refuses imports of modules nobody allowed
    missing = sorted(needed - _classes(tree))
    if missing:
        raise UnsupportedError(
            f"unsupported: model generation did not produce classes {', '.join(missing)}"
        )
    return source, tree


#: Documents with more schemas than this are made in parts (see `_parts`).
PART_THRESHOLD = 64
#: A part ends after a unit whose hash is 0 modulo this: parts of about this many units.
PART_UNITS = 64
#: ... and after this many schemas at most.
PART_MAX_SCHEMAS = 512


def _parts(schemas: dict[str, Any], class_names: dict[str, str]) -> list[list[str]]:
    """The schemas in parts that can be made separately, in document order.

    A unit is a set of schemas connected by `$ref`s; a part is a run of units, cut
    where a unit's name hashes to 0 modulo PART_UNITS. The cuts depend only on the units
    beside them, so adding, changing or removing a schema changes one part, and the
    other parts come from the cache. datamodel-code-generator costs about 2 ms a call
    beside about 1 ms a schema, hence parts of many units rather than one call each.
    """
    names = list(schemas)
    if len(names) <= PART_THRESHOLD:
        return [names]
    by_class = {class_names[name]: name for name in names}
    parent = {name: name for name in names}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for name, schema in schemas.items():
        for _, item, _ in walk(schema):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = ref[len("#/$defs/") :]
                target = target if target in parent else by_class.get(target, "")
                if target in parent:
                    parent[root(target)] = root(name)
    units: dict[str, list[str]] = {}
    for name in names:
        units.setdefault(root(name), []).append(name)
    parts: list[list[str]] = [[]]
    for unit in units.values():
        parts[-1].extend(unit)
        digest = hashlib.sha256(unit[0].encode("utf-8", "surrogatepass")).digest()
        if int.from_bytes(digest[:4], "big") % PART_UNITS == 0 or (
            len(parts[-1]) >= PART_MAX_SCHEMAS
        ):
            parts.append([])
    return [part for part in parts if part]


def _parts_generated(
    parts: list[list[str]],
    schemas: dict[str, Any],
    class_names: dict[str, str],
    needed: set[str],
) -> list[str]:
    """The source of each part, each cached. Parts whose models would share a name (two
    inlined `Type` enums, say) are made again together, so that the generator names
    them apart as it does within one module."""
    made: dict[tuple[str, ...], _Part] = {}
    while True:
        missing = [part for part in parts if tuple(part) not in made]
        made.update(_made_in_two(missing, schemas, class_names, needed))
        owners: dict[str, int] = {}
        merged: dict[int, int] = {}
        for index, part in enumerate(parts):
            for name in made[tuple(part)][1]:
                first = owners.setdefault(name, index)
                if first != index:
                    merged[index] = merged.get(first, first)
        if not merged:
            return [made[tuple(part)][0] for part in parts]
        groups: dict[int, list[str]] = {}
        for index, part in enumerate(parts):
            groups.setdefault(merged.get(index, index), []).extend(part)
        parts = list(groups.values())


#: A part's models: their source and the names its module defines at the top level.
_Part = tuple[str, list[str]]


#: Parts not in the cache holding at least this many schemas are made by two processes.
PARALLEL_SCHEMAS = 200


def _made_in_two(
    parts: list[list[str]],
    schemas: dict[str, Any],
    class_names: dict[str, str],
    needed: set[str],
) -> dict[tuple[str, ...], _Part]:
    """Every part's models: from the cache, else made, half here and half in a forked
    child (which inherits the generator already imported) when there are many."""
    made: dict[tuple[str, ...], _Part] = {}
    todo: list[_Job] = []
    for part in parts:
        chunk = {name: schemas[name] for name in part}
        part_needed, entry = _entry(chunk, class_names, needed & {class_names[n] for n in part})
        cached = cache.get("models-part", entry)
        if cached is not None:
            source, names = json.loads(cached)
            made[tuple(part)] = (source, names)
        else:
            todo.append((chunk, part_needed, entry))
    total = sum(len(job[0]) for job in todo)
    if len(todo) < 2 or total < PARALLEL_SCHEMAS:
        made.update(_made_parts(todo, class_names))
        return made
    # Split where half the schemas are done, leaving each side at least one part.
    done, split = 0, 0
    while split < len(todo) - 1 and (done + len(todo[split][0])) * 2 <= total:
        done += len(todo[split][0])
        split += 1
    split = max(split, 1)
    # Imported once, here, rather than in each process (when the warm-up left them).
    import_formatters()
    with Background(_made_parts, (todo[split:], class_names)) as other:
        made.update(_made_parts(todo[:split], class_names))
        made.update(other.result())
    return made


#: A part to make: its schemas, the classes it must give and its cache key.
_Job = tuple[dict[str, Any], set[str], str]


def _made_parts(jobs: list[_Job], class_names: dict[str, str]) -> dict[tuple[str, ...], _Part]:
    made = {}
    for chunk, part_needed, entry in jobs:
        source, tree = _generate_checked(bundle(chunk, class_names), part_needed)
        made[tuple(chunk)] = (format_model_classes(source, tree), sorted(_top_level_names(tree)))
        cache.put("models-part", entry, json.dumps(made[tuple(chunk)]))
    return made


def _joined(sources: list[str]) -> str:
    """One module of the parts' modules: their imports merged, then their code in order."""
    imported: dict[str, set[str]] = {}
    modules: set[str] = set()
    bodies: list[str] = []
    for source in sources:
        end = 0
        for node in _head(source).body:
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = {
                    alias.name if alias.asname is None else f"{alias.name} as {alias.asname}"
                    for alias in node.names
                }
                imported.setdefault(node.module, set()).update(names)
            elif isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names if alias.asname is None)
            else:
                break
            end = node.end_lineno or end
        body = "\n".join(source.split("\n")[end:]).strip("\n")
        if body:
            bodies.append(body)
    future = imported.pop("__future__", set())
    lines = [f"from __future__ import {', '.join(sorted(future))}", ""] if future else []
    lines += [f"import {module}" for module in sorted(modules)]
    lines += [
        f"from {module} import {', '.join(sorted(names))}"
        for module, names in sorted(imported.items())
    ]
    return "\n".join(lines) + "\n\n\n" + "\n\n\n".join(bodies) + "\n"


#: What the models may import beyond the standard library, and what each needs installed
#: beyond pydantic itself: datamodel-code-generator writes `EmailStr` for the `email` and
#: `idn-email` formats (pydantic checks them with email-validator), and `ulid.ULID` for
#: `ulid` (python-ulid).
_MODEL_IMPORTS: dict[str, dict[str, str]] = {
    "pydantic": {"EmailStr": "email-validator>=2", "NameEmail": "email-validator>=2"},
    "annotated_types": {},
    "typing_extensions": {},
    "ulid": {"*": "python-ulid>=2"},
}


def model_dependencies(source: str) -> list[str]:
    """The distributions the models module needs beyond pydantic, from what it imports.

    A module outside the standard library and the known few is refused: nothing in a
    spec may choose what generated code imports.
    """
    return _dependencies(_head(source))


def _head(source: str) -> ast.Module:
    """The syntax tree of a models module's imports and what else comes before its first
    class (the whole module's when that part does not parse on its own)."""
    try:
        return ast.parse(source.split("\nclass ", 1)[0])
    except SyntaxError:
        return _parsed(source)


def _dependencies(tree: ast.Module) -> list[str]:
    needed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [(alias.name, "*") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in found:
            top = module.partition(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            if top not in _MODEL_IMPORTS:
                raise UnsupportedError(
                    f"unsupported: the models generated from the payload schemas import "
                    f"{module!r}, which asyncgen does not allow"
                )
            requirement = _MODEL_IMPORTS[top].get(name) or _MODEL_IMPORTS[top].get("*")
            if requirement:
                needed.add(requirement)
    return sorted(needed)


def _parsed(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        # Not expected (spec text reaches the models as escaped literals), but never a
        # traceback.
        raise UnsupportedError(
            f"unsupported: the models generated from the payload schemas are not valid "
            f"Python ({exc.msg} at line {exc.lineno})"
        ) from exc


def _classes(tree: ast.Module) -> set[str]:
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


def _top_level_names(tree: ast.Module) -> set[str]:
    """The names a module's classes, functions and assignments define."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _protected_namespace_classes(tree: ast.Module) -> set[str]:
    """Classes with a field in pydantic's protected `model_` namespace."""
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(
            isinstance(item, ast.AnnAssign)
            and isinstance(item.target, ast.Name)
            and item.target.id.startswith("model_")
            and item.target.id != "model_config"
            for item in node.body
        )
    }


def _generate(document: dict[str, Any], collapse: bool, unprotected: set[str] | None = None) -> str:
    from datamodel_code_generator import generate
    from datamodel_code_generator.enums import DataModelType, InputFileType
    from datamodel_code_generator.format import PythonVersion

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            source = generate(
                json.loads(json.dumps(document)),
                input_file_type=InputFileType.JsonSchema,
                output_model_type=DataModelType.PydanticV2BaseModel,
                target_python_version=PythonVersion.PY_311,
                disable_timestamp=True,
                skip_root_model=True,
                snake_case_field=True,
                field_constraints=True,
                use_annotated=True,
                use_standard_collections=True,
                use_union_operator=True,
                use_schema_description=True,
                use_field_description=True,
                use_double_quotes=True,
                allow_population_by_field_name=True,
                capitalise_enum_members=True,
                set_default_enum_member=True,
                collapse_root_models=collapse,
                extra_template_data=defaultdict(
                    dict, {name: {"config": {"protected_namespaces": []}} for name in unprotected}
                )
                if unprotected
                else None,
                formatters=[],
            )
        except Exception as exc:  # the library raises many kinds; all mean the same here
            raise UnsupportedError(
                f"unsupported: a payload schema could not be turned into models ({exc})"
            ) from exc
    if not isinstance(source, str):
        raise UnsupportedError("unsupported: the payload schemas produced several modules")
    # Only "\n" ends a line: spec text inside literals may hold other line separators.
    lines = source.split("\n")
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    # `x: Annotated[Flag | None, Field(validate_default=True)] = False` (a default for a
    # root model) is right at run time but wrong to a type checker: move the default
    # into Field, where both agree.
    source = _VALIDATED_DEFAULT.sub(
        r"\1: Annotated[\2, Field(default=\3, validate_default=True)]", "\n".join(lines)
    )
    return _builtin_dict(_escaped(source)) + "\n"


def _escaped(source: str) -> str:
    """The source with every unprintable character escaped.

    The generator copies spec text into literals and comments as it is: control and
    format characters (U+202E and the other bidirectional controls, vertical tab, U+2028,
    ...) would hide what the code says, end a line inside a literal, or trip ruff's
    PLE25xx rules. Written as `\\uXXXX`, they mean the same inside a literal (and inside a
    regular expression, for both engines) and are plain text inside a comment.
    """
    return "".join(ch if ch == "\n" or ch.isprintable() else _escape(ch) for ch in source)


def _escape(ch: str) -> str:
    return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"


def _builtin_dict(source: str) -> str:
    """`dict[...]` for `typing.Dict[...]`, which the generator still writes for the type of
    extra properties (`__annotations__ = {"__pydantic_extra__": Dict[str, int]}`), and
    which ruff's pyupgrade rules (UP006, UP035) reject."""
    match = _TYPING_IMPORT.search(source)
    if match is None or "Dict" not in match.group(1).split(", "):
        return source
    names = [name for name in match.group(1).split(", ") if name != "Dict"]
    imports = f"from typing import {', '.join(names)}\n" if names else ""
    source = source[: match.start()] + imports + source[match.end() :]
    return re.sub(r"\bDict\[", "dict[", source)


_TYPING_IMPORT = re.compile(r"^from typing import ([\w, ]+)\n", re.MULTILINE)


_VALIDATED_DEFAULT = re.compile(
    r"^(\s+\w+): Annotated\[(.+), Field\(validate_default=True\)\] = (.+)$", re.MULTILINE
)
