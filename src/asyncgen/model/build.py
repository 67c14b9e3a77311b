"""Build the version-neutral `Api` from a loaded AsyncAPI 2.x or 3.0 document."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from asyncgen.asyncapi import address_parameters
from asyncgen.errors import Level, Problem, SpecError
from asyncgen.load import Document, Ref
from asyncgen.load.source import unescape_token
from asyncgen.model.formats import (
    AvroError,
    Dialect,
    avro_to_json_schema,
    discriminator_targets,
    openapi_node,
    parse_avro,
    schema_dialect,
)
from asyncgen.model.ir import (
    Action,
    Api,
    Channel,
    Example,
    Message,
    Operation,
    Parameter,
    Reply,
    Server,
)

# Keys of AsyncAPI's Schema Object that are not JSON Schema and mean nothing to a model.
_NON_SCHEMA_KEYS = {"externalDocs", "discriminator", "xml", "deprecated"}
# Keywords whose values are data, not subschemas: never look for $refs inside them.
_DATA_KEYWORDS = {"enum", "const", "default", "examples", "example"}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


class _Builder:
    def __init__(self, doc: Document, unfit_examples: set[Ref]) -> None:
        self.doc = doc
        self.unfit_examples = unfit_examples
        self.root = Ref(doc.root.path)
        self.warnings: list[Problem] = []
        self.schemas: dict[str, Any] = {}
        self._schema_names: dict[Ref, str] = {}
        self._messages: dict[Ref, Message] = {}
        self._message_order: list[Message] = []
        self._channels: dict[Ref, Channel] = {}
        #: Definitions of Avro named types, by full name.
        self._avro_names: dict[str, str] = {}
        self.default_content_type = "application/json"

    # -- helpers ---------------------------------------------------------------------

    def resolve(self, ref: Ref) -> tuple[Any, Ref]:
        return self.doc.resolve_at(ref)

    def fail(self, ref: Ref, message: str) -> SpecError:
        return SpecError([self.doc.problem(ref, message)])

    def warn(self, ref: Ref, message: str) -> None:
        self.warnings.append(Problem(self.doc.location(ref), message, Level.WARNING))

    def mapping(self, ref: Ref) -> tuple[dict[str, Any], Ref]:
        value, at = self.resolve(ref)
        if value is None:
            return {}, at
        if not isinstance(value, dict):
            raise self.fail(at, "expected a mapping here")
        return value, at

    # -- schemas ---------------------------------------------------------------------

    def _unique_schema_name(self, wanted: str) -> str:
        name, counter = wanted or "Schema", 2
        while name in self.schemas:
            name = f"{wanted}{counter}"
            counter += 1
        return name

    def schema(self, ref: Ref, suggested: str, dialect: Dialect = "jsonschema") -> str:
        """Add the schema at `ref` (and all it refers to) to the bundle; return its name."""
        value = self.doc.get(ref)
        if isinstance(value, dict) and "$ref" in value and isinstance(value["$ref"], str):
            target = self.doc.target_of(value, ref)
            return self._schema_at(target, suggested, dialect)
        return self._schema_at(ref, suggested, dialect)

    def _schema_at(self, ref: Ref, suggested: str, dialect: Dialect = "jsonschema") -> str:
        value, at = self.resolve(ref)
        if at in self._schema_names:
            return self._schema_names[at]
        tokens = at.pointer.split("/")
        from_pointer = unescape_token(tokens[-1]) if len(tokens) >= 3 else ""
        if tokens[1:3] in (["components", "schemas"],) and len(tokens) == 4:
            wanted = from_pointer
        elif not at.pointer and at.file != self.root.file:
            wanted = at.file.stem
        else:
            wanted = suggested
        name = self._unique_schema_name(wanted)
        self._schema_names[at] = name
        self.schemas[name] = None  # reserve the name before walking: schemas may recurse
        self.schemas[name] = self._copy_schema(value, at, name, dialect)
        return name

    def _copy_schema(self, value: Any, at: Ref, owner: str, dialect: Dialect) -> Any:
        if isinstance(value, list):
            return [
                self._copy_schema(item, at.child(i), owner, dialect) for i, item in enumerate(value)
            ]
        if not isinstance(value, dict):
            return value
        if isinstance(value.get("$ref"), str):
            target = self.doc.target_of(value, at)
            name = self._schema_at(target, f"{owner}Item", dialect)
            return {"$ref": f"#/$defs/{name}"}
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if key == "discriminator" and dialect == "openapi":
                copied[key] = self._discriminator(item, at.child(key), owner)
            elif key in _NON_SCHEMA_KEYS or key.startswith("x-"):
                continue
            elif key in _DATA_KEYWORDS:
                copied[key] = item
            elif key in ("properties", "patternProperties", "definitions", "$defs"):
                if isinstance(item, dict):
                    copied[key] = {
                        name: self._copy_schema(sub, at.child(key, name), owner, dialect)
                        for name, sub in item.items()
                    }
                else:
                    copied[key] = item
            else:
                copied[key] = self._copy_schema(item, at.child(key), owner, dialect)
        return openapi_node(copied) if dialect == "openapi" else copied

    def _discriminator(self, value: Any, at: Ref, owner: str) -> Any:
        """An OpenAPI discriminator whose `mapping` points into the bundle."""
        if not isinstance(value, dict):
            return value
        mapping = {
            key: "#/$defs/"
            + self._schema_at(
                self.doc.target_of({"$ref": target}, at.child("mapping", key)),
                f"{owner}Item",
                "openapi",
            )
            for key, target in discriminator_targets(value).items()
        }
        return {**value, "mapping": mapping} if mapping else value

    def _avro_schema(self, ref: Ref, suggested: str) -> str:
        """Add an Avro schema, as JSON Schema, to the bundle; return its name."""
        value, at = self.resolve(ref)
        if at in self._schema_names:
            return self._schema_names[at]
        try:
            parsed = parse_avro(value)
        except AvroError as exc:
            raise self.fail(at, str(exc)) from exc

        def define(fullname: str, make: Callable[[], dict[str, Any]]) -> str:
            if fullname not in self._avro_names:
                name = self._unique_schema_name(fullname.rsplit(".", 1)[-1])
                self._avro_names[fullname] = name
                self.schemas[name] = None  # reserved: records may refer to themselves
                self.schemas[name] = make()
            return self._avro_names[fullname]

        converted = avro_to_json_schema(parsed, define)
        target = str(converted.get("$ref", ""))
        if set(converted) == {"$ref"} and target.startswith("#/$defs/"):
            name = target[len("#/$defs/") :]  # a named type: its definition is the payload
        else:
            name = self._unique_schema_name(suggested)
            self.schemas[name] = converted
        self._schema_names[at] = name
        return name

    def payload(self, ref: Ref, name: str, schema_format: Any) -> str:
        """Bundle a payload or headers schema, given plainly or as a multi-format schema."""
        resolved, resolved_at = self.resolve(ref)
        if isinstance(resolved, dict) and "schemaFormat" in resolved and "schema" in resolved:
            schema_format = resolved["schemaFormat"]
            ref = resolved_at.child("schema")
        dialect = schema_dialect(schema_format)
        if dialect is None:
            raise self.fail(
                ref,
                f"unsupported: schemaFormat {schema_format!r}; asyncgen generates models from "
                "AsyncAPI, JSON Schema, OpenAPI 3.0 and Avro schemas only",
            )
        if dialect == "avro":
            return self._avro_schema(ref, name)
        return self.schema(ref, name, dialect)

    # -- messages --------------------------------------------------------------------

    def message(self, ref: Ref, fallback_name: str) -> Message:
        raw = self.doc.get(ref)
        value, at = self.resolve(ref)
        if at in self._messages:
            return self._messages[at]
        if not isinstance(value, dict):
            raise self.fail(at, "a message must be a mapping")
        value, origins = self._apply_traits(value, at)
        key = at.pointer.rsplit("/", 1)[-1] if "$ref" in (raw or {}) else fallback_name
        key = unescape_token(key)
        name = _text(value.get("name")) or key
        content_type = _text(value.get("contentType")) or self.default_content_type
        message = Message(
            key=key,
            name=name,
            title=_text(value.get("title")),
            summary=_text(value.get("summary")),
            description=_text(value.get("description")),
            content_type=content_type,
            location=self.doc.location(at),
        )
        self._messages[at] = message
        self._message_order.append(message)
        if "payload" in value:
            message.payload = self.payload(
                origins["payload"], f"{name}Payload", value.get("schemaFormat")
            )
        else:
            message.payload = self._unique_schema_name(f"{name}Payload")
            self.schemas[message.payload] = {}
        if "headers" in value:
            message.headers = self.payload(origins["headers"], f"{name}Headers", None)
        for index, example in enumerate(value.get("examples") or []):
            if isinstance(example, dict):
                message.examples.append(
                    Example(
                        name=_text(example.get("name")) or _text(example.get("summary")),
                        payload=example.get("payload"),
                        headers=example.get("headers")
                        if isinstance(example.get("headers"), dict)
                        else None,
                        has_payload="payload" in example,
                        fits=origins["examples"].child(index) not in self.unfit_examples,
                    )
                )
            else:
                self.warn(at.child("examples", index), "message example is not a mapping; ignored")
        return message

    def _apply_traits(
        self, value: dict[str, Any], at: Ref
    ) -> tuple[dict[str, Any], dict[str, Ref]]:
        """The object with its traits applied, and where each field came from."""
        merged: dict[str, Any] = {}
        origins: dict[str, Ref] = {}
        traits = value.get("traits")
        for index, _ in enumerate(traits if isinstance(traits, list) else []):
            trait, trait_at = self.resolve(at.child("traits", index))
            if isinstance(trait, dict):
                merged.update(trait)
                origins.update({key: trait_at.child(key) for key in trait})
        merged.update({k: v for k, v in value.items() if k != "traits"})
        origins.update({key: at.child(key) for key in value if key != "traits"})
        return merged, origins

    def parameters(self, params: Any, at: Ref, version: int) -> list[Parameter]:
        result: list[Parameter] = []
        if not isinstance(params, dict):
            return result
        for name in params:
            value, value_at = self.resolve(at.child(name))
            if not isinstance(value, dict):
                value = {}
            source = value
            if version == 2:
                schema: Any = {}
                if "schema" in value:
                    schema, _ = self.resolve(value_at.child("schema"))
                source = schema if isinstance(schema, dict) else {}
            enum = source.get("enum")
            default = source.get("default")
            examples = source.get("examples")
            result.append(
                Parameter(
                    name=name,
                    description=_text(value.get("description")),
                    enum=[str(v) for v in enum] if isinstance(enum, list) else None,
                    default=str(default) if default is not None else None,
                    examples=[str(v) for v in examples] if isinstance(examples, list) else [],
                    pattern=_text(source.get("pattern")),
                    identity=_identity(value.get("x-asyncgen-identity")),
                )
            )
        return result

    def _infer_parameters(self, channel: Channel, declares: bool) -> None:
        """Without a `parameters` map at all, the address parameters are taken as strings
        (the validate stage warns)."""
        if channel.address is not None and not declares:
            names = dict.fromkeys(address_parameters(channel.address))
            channel.parameters = [Parameter(name=name) for name in names]

    def _bindings(self, ref: Ref) -> dict[str, Any]:
        value = self.doc.find(ref)
        if value is None:
            return {}
        bindings, at = self.resolve(ref)
        if not isinstance(bindings, dict):
            return {}
        result: dict[str, Any] = {}
        for protocol in bindings:
            binding, _ = self.resolve(at.child(protocol))
            result[protocol] = binding
        return result

    # -- AsyncAPI 3.0 ----------------------------------------------------------------

    def channel_v3(self, ref: Ref) -> Channel:
        value, at = self.mapping(ref)
        if at in self._channels:
            return self._channels[at]
        key = unescape_token(at.pointer.rsplit("/", 1)[-1])
        address = value.get("address")
        channel = Channel(
            key=key,
            address=address if isinstance(address, str) else None,
            description=_text(value.get("description")),
            bindings=self._bindings(at.child("bindings")) if "bindings" in value else {},
            location=self.doc.location(at),
        )
        self._channels[at] = channel
        channel.parameters = self.parameters(value.get("parameters"), at.child("parameters"), 3)
        self._infer_parameters(channel, value.get("parameters") is not None)
        for name in value.get("messages") or {}:
            channel.messages.append(self.message(at.child("messages", name), name))
        return channel

    def build_v3(self, data: dict[str, Any]) -> tuple[list[Channel], list[Operation]]:
        channels = [
            self.channel_v3(self.root.child("channels", key)) for key in data.get("channels") or {}
        ]
        operations: list[Operation] = []
        for key in data.get("operations") or {}:
            op_ref = self.root.child("operations", key)
            value, at = self.mapping(op_ref)
            action: Action = value["action"]
            channel = self.channel_v3(at.child("channel"))
            messages = (
                [
                    self.message(at.child("messages", i), key)
                    for i, _ in enumerate(value["messages"])
                ]
                if isinstance(value.get("messages"), list) and value["messages"]
                else list(channel.messages)
            )
            traits_bindings: dict[str, Any] = {}
            for index, _ in enumerate(value.get("traits") or []):
                trait, trait_at = self.resolve(at.child("traits", index))
                if isinstance(trait, dict) and "bindings" in trait:
                    traits_bindings.update(self._bindings(trait_at.child("bindings")))
            bindings = {**traits_bindings, **self._bindings(at.child("bindings"))}
            operation = Operation(
                key=key,
                action=action,
                channel=channel,
                messages=messages,
                summary=_text(value.get("summary")),
                description=_text(value.get("description")),
                bindings=bindings,
                extensions={k: v for k, v in value.items() if k.startswith("x-")},
                location=self.doc.location(at),
            )
            if value.get("reply") is not None:
                operation.reply = self.reply_v3(at.child("reply"), key)
            operations.append(operation)
        return channels, operations

    def reply_v3(self, ref: Ref, op_key: str) -> Reply:
        value, at = self.mapping(ref)
        channel = self.channel_v3(at.child("channel")) if "channel" in value else None
        if isinstance(value.get("messages"), list) and value["messages"]:
            messages = [
                self.message(at.child("messages", i), f"{op_key}Reply")
                for i, _ in enumerate(value["messages"])
            ]
        else:
            messages = list(channel.messages) if channel else []
        location = None
        if "address" in value:
            address, _ = self.mapping(at.child("address"))
            location = _text(address.get("location"))
        return Reply(channel=channel, messages=messages, address_location=location)

    # -- AsyncAPI 2.x ----------------------------------------------------------------

    def build_v2(self, data: dict[str, Any]) -> tuple[list[Channel], list[Operation]]:
        channels: list[Channel] = []
        operations: list[Operation] = []
        for address in data.get("channels") or {}:
            value, at = self.mapping(self.root.child("channels", address))
            channel = Channel(
                key=address,
                address=address,
                description=_text(value.get("description")),
                bindings=self._bindings(at.child("bindings")) if "bindings" in value else {},
                location=self.doc.location(at),
            )
            channel.parameters = self.parameters(value.get("parameters"), at.child("parameters"), 2)
            self._infer_parameters(channel, value.get("parameters") is not None)
            channels.append(channel)
            verbs: tuple[tuple[str, Action], ...] = (("publish", "receive"), ("subscribe", "send"))
            for verb, action in verbs:
                if verb not in value:
                    continue
                operations.append(self.operation_v2(channel, at.child(verb), action))
        return channels, operations

    def operation_v2(self, channel: Channel, ref: Ref, action: Action) -> Operation:
        value, at = self.mapping(ref)
        value, origins = self._apply_traits(value, at)
        key = _text(value.get("operationId")) or f"{action} {channel.key}"
        messages: list[Message] = []
        message_value, message_at = (
            self.resolve(at.child("message")) if "message" in value else (None, at)
        )
        if isinstance(message_value, dict) and isinstance(message_value.get("oneOf"), list):
            for index, _ in enumerate(message_value["oneOf"]):
                messages.append(
                    self.message(message_at.child("oneOf", index), f"{key} message {index + 1}")
                )
        elif message_value is not None:
            messages.append(self.message(at.child("message"), f"{key} message"))
        for message in messages:
            if message not in channel.messages:
                channel.messages.append(message)
        return Operation(
            key=key,
            action=action,
            channel=channel,
            messages=messages,
            summary=_text(value.get("summary")),
            description=_text(value.get("description")),
            bindings=self._bindings(origins["bindings"]) if "bindings" in origins else {},
            extensions={k: v for k, v in value.items() if k.startswith("x-")},
            location=self.doc.location(at),
        )

    def servers(self, data: dict[str, Any], version: int) -> list[Server]:
        result: list[Server] = []
        for key in data.get("servers") or {}:
            value, at = self.mapping(self.root.child("servers", key))
            protocol = str(value.get("protocol", "")).lower()
            variables = value.get("variables") if isinstance(value.get("variables"), dict) else {}
            if version == 2:
                url = str(value.get("url", ""))
                host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", url)
                pathname = None
            else:
                host = str(value.get("host", ""))
                pathname = _text(value.get("pathname"))
            for name, variable in (variables or {}).items():
                variable, _ = self.resolve(at.child("variables", name))
                default = variable.get("default") if isinstance(variable, dict) else None
                if default is not None:
                    host = host.replace(f"{{{name}}}", str(default))
            result.append(
                Server(
                    key=key,
                    host=host,
                    protocol=protocol,
                    protocol_version=_text(str(value.get("protocolVersion") or "")),
                    pathname=pathname,
                    description=_text(value.get("description")),
                    bindings=self._bindings(at.child("bindings")) if "bindings" in value else {},
                )
            )
        return result


def build_api(doc: Document, unfit_examples: set[Ref] | None = None) -> tuple[Api, list[Problem]]:
    """Map the document into an `Api`; returns it with any warnings found on the way.
    `unfit_examples`: where the examples are that the validate stage found unfit."""
    data = doc.data
    builder = _Builder(doc, unfit_examples or set())
    version_text = str(data.get("asyncapi", ""))
    version = 3 if version_text.startswith("3.") else 2
    builder.default_content_type = _text(data.get("defaultContentType")) or "application/json"
    info, _ = builder.mapping(builder.root.child("info"))
    if version == 3:
        channels, operations = builder.build_v3(data)
    else:
        channels, operations = builder.build_v2(data)
    api = Api(
        title=_text(info.get("title")) or "AsyncAPI service",
        version=str(info.get("version", "")),
        asyncapi=version_text,
        description=_text(info.get("description")),
        default_content_type=builder.default_content_type,
        servers=builder.servers(data, version),
        channels=channels,
        operations=operations,
        messages=list(builder._message_order),
        schemas=builder.schemas,
    )
    return api, builder.warnings


def _identity(value: Any) -> Literal["username", "clientId"] | None:
    """`x-asyncgen-identity` of a parameter (validate reports any other value)."""
    if value == "username":
        return "username"
    if value == "clientId":
        return "clientId"
    return None
