"""Message examples against their payload schemas.

An example that does not match its schema is a warning: the generated project's tests
leave it out. The verdict travels with the document to the model (`Example.fits`), so
the render stage uses it without checking anything itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from asyncgen.asyncapi import RAW_TYPES, is_json_schema_format, payload_kind
from asyncgen.errors import Level, Problem, SpecError
from asyncgen.load import Document, Ref
from asyncgen.validate.payloads import message_places


def _merged(doc: Document, message: dict[str, Any], at: Ref) -> dict[str, tuple[Any, Ref]]:
    """The message's fields with its traits applied, each with where it is written."""
    fields: dict[str, tuple[Any, Ref]] = {}
    traits = message.get("traits")
    for index, trait in enumerate(traits if isinstance(traits, list) else []):
        try:
            trait, trait_at = doc.resolve(trait, at.child("traits", index))
        except SpecError:
            continue
        if isinstance(trait, dict):
            fields.update({key: (value, trait_at.child(key)) for key, value in trait.items()})
    own = {key: (value, at.child(key)) for key, value in message.items() if key != "traits"}
    fields.update(own)
    return fields


class _Checker:
    """Validates values against schemas anywhere in the document, `$ref`s across files."""

    def __init__(self, doc: Document) -> None:
        import referencing
        import referencing.jsonschema

        self.doc = doc
        self._referencing = referencing
        self._draft = referencing.jsonschema.DRAFT7
        self.registry: Any = referencing.Registry(retrieve=self._retrieve)  # type: ignore[call-arg]

    def _uri(self, file: Path) -> str:
        source = self.doc.files.get(file)
        return source.url if source is not None and source.url else file.as_uri()

    def _retrieve(self, uri: str) -> Any:
        parts = urlsplit(uri)
        try:
            if parts.scheme == "file":
                data = self.doc.get(Ref(Path(unquote(parts.path))))
            else:
                data = next(
                    self.doc.files[key].data
                    for key, fetched in self.doc.remote.items()
                    if fetched.url == uri
                )
        except (SpecError, StopIteration):
            raise self._referencing.exceptions.NoSuchResource(uri) from None
        return self._draft.create_resource(data)

    def error(self, schema_at: Ref, value: Any) -> str | None:
        """Why `value` does not match the schema at `schema_at`, or None when it does."""
        import jsonschema

        target = f"{self._uri(schema_at.file)}#{schema_at.pointer}"
        validator = jsonschema.Draft7Validator(
            {"$ref": target},
            registry=self.registry,
            format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
        )
        try:
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        except Exception as exc:  # a schema jsonschema cannot follow: say so, go on
            return f"the schema cannot be checked: {' '.join(str(exc).split())[:100]}"
        return None if error is None else str(error.message)[:200]


def check_examples(doc: Document) -> tuple[list[Problem], set[Ref]]:
    """Warnings for examples that do not match their payload schema, and where those
    examples are (the model marks them so the generated tests leave them out)."""
    problems: list[Problem] = []
    unfit: set[Ref] = set()
    checker: _Checker | None = None
    seen: set[Ref] = set()
    for place in message_places(doc):
        try:
            message, at = doc.resolve_at(place)
        except SpecError:
            continue
        if at in seen or not isinstance(message, dict):
            continue
        seen.add(at)
        fields = _merged(doc, message, at)
        examples, examples_at = fields.get("examples", (None, at))
        if "payload" not in fields or not isinstance(examples, list):
            continue
        content_type = fields.get("contentType", (None, at))[0]
        if not isinstance(content_type, str):
            content_type = doc.data.get("defaultContentType")
        raw = payload_kind(content_type if isinstance(content_type, str) else None) in RAW_TYPES
        schema_at = _schema_place(doc, fields)
        if schema_at is None and not raw:
            continue
        name = fields.get("name", (None, at))[0]
        name = name if isinstance(name, str) and name.strip() else at.pointer.rsplit("/", 1)[-1]
        for index, example in enumerate(examples):
            if not isinstance(example, dict) or "payload" not in example:
                continue
            if raw:
                # Text and bytes arrive as they are: an example must be the text itself.
                payload = example["payload"]
                error = None if isinstance(payload, str) else "a text payload must be a string"
            else:
                assert schema_at is not None
                checker = checker or _Checker(doc)
                error = checker.error(schema_at, example["payload"])
            if error is not None:
                unfit.add(examples_at.child(index))
                problems.append(
                    Problem(
                        doc.location(at),
                        f"example {index + 1} of message {name!r} does not match its payload "
                        f"schema ({error}); left out of the generated tests",
                        Level.WARNING,
                    )
                )
    return problems, unfit


def _schema_place(doc: Document, fields: dict[str, tuple[Any, Ref]]) -> Ref | None:
    """Where the message's JSON Schema payload is, or None for another schema format."""
    payload, payload_at = fields["payload"]
    schema_format = fields.get("schemaFormat", (None, payload_at))[0]
    try:
        resolved, resolved_at = doc.resolve(payload, payload_at)
    except SpecError:
        return None
    if isinstance(resolved, dict) and "schemaFormat" in resolved and "schema" in resolved:
        schema_format = resolved["schemaFormat"]
        payload_at = resolved_at.child("schema")
    if schema_format is not None and not is_json_schema_format(schema_format):
        return None
    return payload_at
