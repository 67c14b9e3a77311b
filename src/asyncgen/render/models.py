"""Pydantic v2 models of the payload schemas, through datamodel-code-generator."""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections import defaultdict
from typing import Any

from asyncgen.errors import UnsupportedError
from asyncgen.model.keywords import without_generator_keywords
from asyncgen.render import cache
from asyncgen.render.formatting import format_python

#: Names the models module imports or that would read badly as a model name.
MODEL_RESERVED = {
    "Annotated",
    "Any",
    "AwareDatetime",
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


def _rewrite_refs(value: Any, names: dict[str, str]) -> Any:
    """Point refs at class names, and drop defaults the schema contradicts.

    A default such as `"false"` on a boolean would become a model that fails its own
    type check; dropping it keeps the field optional without a wrong value.
    """
    if isinstance(value, list):
        return [_rewrite_refs(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    if "default" in value and not _default_fits(value):
        value = {key: item for key, item in value.items() if key != "default"}
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key == "$ref" and isinstance(item, str) and item.startswith("#/$defs/"):
            result[key] = "#/$defs/" + names[item[len("#/$defs/") :]]
        elif key in ("enum", "const", "default", "examples", "example"):
            result[key] = item
        else:
            result[key] = _rewrite_refs(item, names)
    return result


def bundle(schemas: dict[str, Any], class_names: dict[str, str]) -> dict[str, Any]:
    """One JSON Schema whose `$defs` are keyed by the Python class names.

    The generator's own extension keywords are left out: none may choose the models'
    imports, types or base classes (the validate stage refuses or warns about each).
    """
    return {
        "$defs": {
            class_names[name]: _rewrite_refs(without_generator_keywords(schema), class_names)
            if isinstance(schema, dict)
            else schema
            for name, schema in schemas.items()
        }
    }


# Bumped whenever the way models are generated changes, so cached models of older rules miss.
_RULES = "3"


def generate_models(
    schemas: dict[str, Any], class_names: dict[str, str], required: set[str] | None = None
) -> str:
    """Python source of one module holding a model per schema (unformatted).

    `required` are the class names other modules use (message payloads and headers):
    they must exist. Other schemas may be inlined into the fields that use them.
    Results are cached by the schemas, names and tool versions.
    """
    if not schemas:
        return "from __future__ import annotations\n"
    document, needed, entry = _entry(schemas, class_names, required)
    cached = cache.get("models", entry)
    if cached is not None:
        return cached
    source = _generate_checked(document, needed)
    cache.put("models", entry, source)
    return source


def formatted_models(
    schemas: dict[str, Any], class_names: dict[str, str], required: set[str], package: str
) -> str:
    """`generate_models`, formatted whole (datamodel-code-generator's code is not in
    black's style)."""
    source = generate_models(schemas, class_names, required)
    return format_python(f"src/{package}/_generated/models.py", source, package, whole=True)


def preload() -> None:
    """Import what making and formatting models needs (a third of a second together)."""
    import black  # noqa: F401
    import datamodel_code_generator.config
    import datamodel_code_generator.parser.jsonschema  # noqa: F401
    import isort  # noqa: F401


def models_cached(
    schemas: dict[str, Any], class_names: dict[str, str], required: set[str] | None = None
) -> bool:
    """Whether `generate_models` will answer from the cache (or has nothing to do)."""
    return not schemas or cache.get("models", _entry(schemas, class_names, required)[2]) is not None


def _entry(
    schemas: dict[str, Any], class_names: dict[str, str], required: set[str] | None
) -> tuple[dict[str, Any], set[str], str]:
    """The bundled document, the classes it must produce and its cache key."""
    needed = set(class_names.values()) if required is None else required
    document = bundle(schemas, class_names)
    entry = cache.key(
        "models",
        _RULES,
        cache.tool_version("datamodel-code-generator"),
        json.dumps(document, sort_keys=True),
        json.dumps(sorted(needed)),
    )
    return document, needed, entry


def _generate_checked(document: dict[str, Any], needed: set[str]) -> str:
    collapse = True
    source = _generate(document, collapse=collapse)
    if needed - _classes(source):
        # Collapsing inlines root models that fields refer to; when a message payload is
        # one of them, generate without collapsing so that the payload keeps its class.
        collapse = False
        source = _generate(document, collapse=collapse)
    if crowded := _protected_namespace_classes(source):
        # A payload property named like `model_dump` becomes the field `model_dump_`,
        # which pydantic warns about on import (its protected `model_` namespace): those
        # classes opt out of the namespace, as pydantic's warning suggests.
        source = _generate(document, collapse=collapse, unprotected=crowded)
    missing = sorted(needed - _classes(source))
    if missing:
        raise UnsupportedError(
            f"unsupported: model generation did not produce classes {', '.join(missing)}"
        )
    return source


def _classes(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        # datamodel-code-generator writes some unusual characters (vertical tab, U+2028,
        # ...) of enum values into literals as they are, which Python does not accept.
        raise UnsupportedError(
            f"unsupported: the models generated from the payload schemas are not valid "
            f"Python ({exc.msg} at line {exc.lineno}); look for control or line-separator "
            "characters in enum values or defaults"
        ) from exc
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


def _protected_namespace_classes(source: str) -> set[str]:
    """Classes with a field in pydantic's protected `model_` namespace."""
    return {
        node.name
        for node in ast.parse(source).body
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
    lines = source.splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    # `x: Annotated[Flag | None, Field(validate_default=True)] = False` (a default for a
    # root model) is right at run time but wrong to a type checker: move the default
    # into Field, where both agree.
    return (
        _VALIDATED_DEFAULT.sub(
            r"\1: Annotated[\2, Field(default=\3, validate_default=True)]", "\n".join(lines)
        )
        + "\n"
    )


_VALIDATED_DEFAULT = re.compile(
    r"^(\s+\w+): Annotated\[(.+), Field\(validate_default=True\)\] = (.+)$", re.MULTILINE
)
