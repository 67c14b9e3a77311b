"""asyncgen's own JSON Schemas (Draft 2020-12) of the AsyncAPI 2.0-2.6 and 3.0 objects.

They check the raw root document before any `$ref` is followed, so wherever the
specification allows a Reference Object, `{"$ref": "..."}` is accepted. They are
written for readable error messages, not as copies of the official schemas:

- "a Reference or an X" is `if` (it is a mapping with `$ref`) `then` Reference `else` X,
  never `oneOf`, so an error is reported against the branch the author meant;
- every AsyncAPI object has a `title` (used in messages such as "unknown field `foo`
  in a channel") and refuses unknown fixed fields, allowing `x-` extensions;
- payload and header schemas, and the contents of bindings, are only checked to be
  mappings (or booleans, for schemas): later stages read them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

Schema = dict[str, Any]

SUPPORTED_VERSIONS = (
    "2.0.0", "2.1.0", "2.2.0", "2.3.0", "2.4.0", "2.5.0", "2.6.0", "3.0.0", "3.1.0",
)  # fmt: skip

#: Specification extensions, as the official schemas spell them.
EXTENSION_PATTERN = r"^x-[\w\d\.\x2d_]+$"
#: Keys of the maps under `components`.
COMPONENT_NAME_PATTERN = r"^[a-zA-Z0-9\.\-_]+$"
#: A runtime expression such as `$message.header#/correlationId`.
RUNTIME_EXPRESSION_PATTERN = r"^\$message\.(header|payload)#(\/(([^\/~])|(~[01]))*)*"

STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
MAPPING: Schema = {"type": "object"}
STRINGS: Schema = {"type": "array", "items": STRING}
#: A payload or header schema (JSON Schema, Avro, ...): not checked further here.
ANY_SCHEMA: Schema = {"title": "schema", "type": ["object", "boolean"]}
RUNTIME_EXPRESSION: Schema = {
    "type": "string",
    "pattern": RUNTIME_EXPRESSION_PATTERN,
    # Read by the error messages: "`location` must be a runtime expression ...".
    "x-expected": "a runtime expression such as `$message.header#/correlationId`",
}
IS_REFERENCE: Schema = {"type": "object", "required": ["$ref"]}


def ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def ref_or(name: str) -> Schema:
    """A Reference Object, or else the object `name`."""
    return {"if": IS_REFERENCE, "then": ref("Reference"), "else": ref(name)}


def fields(title: str, properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    """An AsyncAPI object: its fixed fields, `x-` extensions, nothing else."""
    schema: Schema = {
        "title": title,
        "type": "object",
        "properties": properties,
        "patternProperties": {EXTENSION_PATTERN: {}},
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def map_of(item: Schema) -> Schema:
    return {"type": "object", "additionalProperties": item}


def list_of(item: Schema, unique: bool = False) -> Schema:
    schema: Schema = {"type": "array", "items": item}
    if unique:
        schema["uniqueItems"] = True
    return schema


def components_map(item: Schema) -> Schema:
    return {
        "type": "object",
        "propertyNames": {
            "pattern": COMPONENT_NAME_PATTERN,
            "x-expected": "a component name made of letters, digits, `.`, `-` and `_`",
        },
        "additionalProperties": item,
    }


def _security_scheme(types: list[str], version_3: bool) -> Schema:
    """One Security Scheme Object; the fields each `type` needs are required by `allOf`."""
    scopes = "availableScopes" if version_3 else "scopes"
    flow = fields(
        "OAuth flow",
        {
            "authorizationUrl": STRING,
            "tokenUrl": STRING,
            "refreshUrl": STRING,
            scopes: {"type": "object", "additionalProperties": STRING},
        },
    )
    flows = fields(
        "OAuth flows object",
        {
            "implicit": {"allOf": [flow, {"required": ["authorizationUrl", scopes]}]},
            "password": {"allOf": [flow, {"required": ["tokenUrl", scopes]}]},
            "clientCredentials": {"allOf": [flow, {"required": ["tokenUrl", scopes]}]},
            "authorizationCode": {
                "allOf": [flow, {"required": ["authorizationUrl", "tokenUrl", scopes]}]
            },
        },
    )
    properties: Schema = {
        "type": {"type": "string", "enum": types},
        "description": STRING,
        "name": STRING,
        "in": STRING,
        "scheme": STRING,
        "bearerFormat": STRING,
        "flows": flows,
        "openIdConnectUrl": STRING,
    }
    if version_3:
        properties["scopes"] = STRINGS

    def when(kind: str, then: Schema) -> Schema:
        condition = {"properties": {"type": {"const": kind}}, "required": ["type"]}
        return {"if": condition, "then": {"title": f"security scheme of type {kind}"} | then}

    schema = fields("security scheme", properties, required=("type",))
    schema["allOf"] = [
        when("apiKey", {"required": ["in"], "properties": {"in": {"enum": ["user", "password"]}}}),
        when(
            "httpApiKey",
            {
                "required": ["name", "in"],
                "properties": {"in": {"enum": ["query", "header", "cookie"]}},
            },
        ),
        when("http", {"required": ["scheme"]}),
        when("oauth2", {"required": ["flows"]}),
        when("openIdConnect", {"required": ["openIdConnectUrl"]}),
    ]
    return schema


_SECURITY_TYPES_2_0 = [
    "userPassword",
    "apiKey",
    "X509",
    "symmetricEncryption",
    "asymmetricEncryption",
    "httpApiKey",
    "http",
    "oauth2",
    "openIdConnect",
]
#: SASL mechanisms, added in AsyncAPI 2.1.0.
_SECURITY_TYPES_SASL = ["plain", "scramSha256", "scramSha512", "gssapi"]

#: The protocols a 3.0 Bindings Object may name.
_BINDING_PROTOCOLS_3 = [
    "http", "ws", "amqp", "amqp1", "mqtt", "kafka", "anypointmq", "nats", "jms",
    "sns", "sqs", "stomp", "redis", "ibmmq", "solace", "googlepubsub", "pulsar",
]  # fmt: skip


def _common_defs() -> Schema:
    """Objects that are the same in 2.x and 3.0 (tags and external docs differ in 3.0
    only in being allowed as References, which the callers decide)."""
    return {
        "Reference": {
            "title": "reference",
            "x-expected": "a reference (a mapping with `$ref`)",
            "type": "object",
            "required": ["$ref"],
            "properties": {"$ref": STRING},
        },
        "contact": fields("contact object", {"name": STRING, "url": STRING, "email": STRING}),
        "license": fields("license object", {"name": STRING, "url": STRING}, required=("name",)),
        "externalDocs": fields(
            "external documentation object", {"description": STRING, "url": STRING}, ("url",)
        ),
        "serverVariable": fields(
            "server variable",
            {
                "enum": list_of(STRING, unique=True),
                "default": STRING,
                "description": STRING,
                "examples": STRINGS,
            },
        ),
        "correlationId": fields(
            "correlation ID object",
            {"description": STRING, "location": RUNTIME_EXPRESSION},
            required=("location",),
        ),
    }


def _message_example(with_name: bool, any_headers: bool = False) -> Schema:
    # From 3.1.0 on, the headers of an example may be of any type, like its payload.
    properties: Schema = {"headers": {} if any_headers else MAPPING, "payload": {}}
    if not with_name:  # AsyncAPI 2.0.0: an example is just headers and/or payload
        return fields("message example", properties)
    properties |= {"name": STRING, "summary": STRING}
    schema = fields("message example", properties)
    schema["anyOf"] = [{"required": ["payload"]}, {"required": ["headers"]}]
    return schema


@cache
def asyncapi_2(minor: int) -> Schema:
    """The schema of an AsyncAPI 2.`minor`.0 document (0 <= minor <= 6)."""
    tags = list_of(ref("tag"), unique=True)
    security = list_of({"type": "object", "additionalProperties": STRINGS})
    bindings = {"title": "bindings object", "type": "object"}

    # Server variables may be References from 2.5.0 on.
    server_variable = ref_or("serverVariable") if minor >= 5 else ref("serverVariable")
    server: Schema = {
        "url": STRING,
        "protocol": STRING,
        "protocolVersion": STRING,
        "description": STRING,
        "variables": map_of(server_variable),
        "security": security,
        "bindings": bindings,
    }
    if minor >= 5:
        server["tags"] = tags

    operation_trait: Schema = {
        "operationId": STRING,
        "summary": STRING,
        "description": STRING,
        "tags": tags,
        "externalDocs": ref("externalDocs"),
        "bindings": bindings,
    }
    if minor >= 4:
        operation_trait["security"] = security
    operation = operation_trait | {
        "traits": list_of(ref_or("operationTrait")),
        "message": ref("message"),
    }

    message_trait: Schema = {
        "schemaFormat": STRING,
        "contentType": STRING,
        "headers": ANY_SCHEMA,
        "correlationId": ref_or("correlationId"),
        "tags": tags,
        "summary": STRING,
        "name": STRING,
        "title": STRING,
        "description": STRING,
        "externalDocs": ref("externalDocs"),
        "deprecated": BOOLEAN,
        "examples": list_of(_message_example(with_name=minor >= 1)),
        "bindings": bindings,
    }
    if minor >= 4:
        message_trait["messageId"] = STRING
    message_object = message_trait | {
        "payload": ANY_SCHEMA,
        "traits": list_of(ref_or("messageTrait")),
    }

    channel: Schema = {
        "$ref": STRING,
        "description": STRING,
        "subscribe": ref("operation"),
        "publish": ref("operation"),
        "parameters": map_of(ref_or("parameter")),
        "bindings": bindings,
        "deprecated": BOOLEAN,
    }
    if minor >= 2:
        channel["servers"] = list_of(STRING, unique=True)

    # Servers may be References from 2.3.0 on.
    server_entry = ref_or("server") if minor >= 3 else ref("server")
    components: Schema = {
        "schemas": components_map(ANY_SCHEMA),
        "messages": components_map(ref("message")),
        "securitySchemes": components_map(ref_or("securityScheme")),
        "parameters": components_map(ref_or("parameter")),
        "correlationIds": components_map(ref_or("correlationId")),
        "operationTraits": components_map(ref("operationTrait")),
        "messageTraits": components_map(ref("messageTrait")),
        "serverBindings": components_map(bindings),
        "channelBindings": components_map(bindings),
        "operationBindings": components_map(bindings),
        "messageBindings": components_map(bindings),
    }
    if minor >= 3:
        components["servers"] = components_map(server_entry)
        components["channels"] = components_map(ref("channel"))
    if minor >= 4:
        components["serverVariables"] = components_map(server_variable)

    security_types = _SECURITY_TYPES_2_0 + (_SECURITY_TYPES_SASL if minor >= 1 else [])
    defs = _common_defs() | {
        "info": fields(
            "info object",
            {
                "title": STRING,
                "version": STRING,
                "description": STRING,
                "termsOfService": STRING,
                "contact": ref("contact"),
                "license": ref("license"),
            },
            required=("title", "version"),
        ),
        "tag": fields(
            "tag",
            {"name": STRING, "description": STRING, "externalDocs": ref("externalDocs")},
            ("name",),
        ),
        "server": fields("server", server, required=("url", "protocol")),
        "channel": fields("channel", channel),
        "parameter": fields(
            "parameter",
            {"description": STRING, "schema": ANY_SCHEMA, "location": RUNTIME_EXPRESSION},
        ),
        "operation": fields("operation", operation),
        "operationTrait": fields("operation trait", operation_trait),
        # A Reference, a `oneOf` list of messages, or a Message Object.
        "message": {
            "if": IS_REFERENCE,
            "then": ref("Reference"),
            "else": {
                "if": {"type": "object", "required": ["oneOf"]},
                "then": {
                    "title": "`oneOf` list of messages",
                    "type": "object",
                    "properties": {"oneOf": list_of(ref("message"))},
                    "additionalProperties": False,
                },
                "else": fields("message", message_object),
            },
        },
        "messageTrait": fields("message trait", message_trait),
        "securityScheme": _security_scheme(security_types, version_3=False),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **fields(
            "AsyncAPI document",
            {
                "asyncapi": STRING,
                "id": STRING,
                "info": ref("info"),
                "servers": map_of(server_entry),
                "defaultContentType": STRING,
                "channels": {
                    "type": "object",
                    "propertyNames": {"minLength": 1, "x-expected": "a channel address"},
                    "additionalProperties": ref("channel"),
                },
                "components": fields("components object", components),
                "tags": tags,
                "externalDocs": ref("externalDocs"),
            },
            required=("asyncapi", "info", "channels"),
        ),
        "$defs": defs,
    }


@cache
def asyncapi_3(minor: int = 0) -> Schema:
    """The schema of an AsyncAPI 3.`minor`.0 document (0 <= minor <= 1).

    3.1.0 adds the `ros2` bindings and no longer limits the bindings objects to the
    protocols it names; the headers of a message example may be of any type.
    """
    tags = list_of(ref_or("tag"), unique=True)
    external_docs = ref_or("externalDocs")
    references = list_of(ref("Reference"))
    security = list_of(ref_or("securityScheme"))

    def bindings(kind: str) -> Schema:
        names = _BINDING_PROTOCOLS_3 + (["ros2"] if minor >= 1 else [])
        protocols: Schema = {protocol: MAPPING for protocol in names}
        schema = fields(kind, protocols)
        if minor >= 1:
            # Bindings of protocols the specification does not name are passed over.
            schema.pop("additionalProperties", None)
            schema.pop("unevaluatedProperties", None)
        return {"if": IS_REFERENCE, "then": ref("Reference"), "else": schema}

    # A payload or header schema, or a Multi Format Schema Object around one.
    multi_format_schema: Schema = {
        "if": {"type": "object", "required": ["schema"]},
        "then": fields("multi format schema object", {"schemaFormat": STRING, "schema": {}}),
        "else": ANY_SCHEMA,
    }

    operation_trait: Schema = {
        "title": STRING,
        "summary": STRING,
        "description": STRING,
        "security": security,
        "tags": tags,
        "externalDocs": external_docs,
        "bindings": bindings("operation bindings object"),
    }
    message_trait: Schema = {
        "contentType": STRING,
        "headers": multi_format_schema,
        "correlationId": ref_or("correlationId"),
        "tags": tags,
        "summary": STRING,
        "name": STRING,
        "title": STRING,
        "description": STRING,
        "externalDocs": external_docs,
        "deprecated": BOOLEAN,
        "examples": list_of(_message_example(with_name=True, any_headers=minor >= 1)),
        "bindings": bindings("message bindings object"),
    }
    # A trait applied with overrides may be written as a pair [trait, overrides].
    message_trait_entry: Schema = {
        "if": {"type": "array"},
        "then": {"type": "array", "prefixItems": [ref_or("messageTrait"), MAPPING]},
        "else": ref_or("messageTrait"),
    }

    defs = _common_defs() | {
        "info": fields(
            "info object",
            {
                "title": STRING,
                "version": STRING,
                "description": STRING,
                "termsOfService": STRING,
                "contact": ref("contact"),
                "license": ref("license"),
                "tags": tags,
                "externalDocs": external_docs,
            },
            required=("title", "version"),
        ),
        "tag": fields(
            "tag", {"name": STRING, "description": STRING, "externalDocs": external_docs}, ("name",)
        ),
        "server": fields(
            "server",
            {
                "host": STRING,
                "protocol": STRING,
                "protocolVersion": STRING,
                "pathname": STRING,
                "title": STRING,
                "summary": STRING,
                "description": STRING,
                "variables": map_of(ref_or("serverVariable")),
                "security": security,
                "tags": tags,
                "externalDocs": external_docs,
                "bindings": bindings("server bindings object"),
            },
            required=("host", "protocol"),
        ),
        "channel": fields(
            "channel",
            {
                "address": {"type": ["string", "null"]},
                "messages": map_of(ref_or("message")),
                "parameters": map_of(ref_or("parameter")),
                "title": STRING,
                "summary": STRING,
                "description": STRING,
                "servers": list_of(ref("Reference"), unique=True),
                "tags": tags,
                "externalDocs": external_docs,
                "bindings": bindings("channel bindings object"),
            },
        ),
        "parameter": fields(
            "parameter",
            {
                "enum": STRINGS,
                "default": STRING,
                "description": STRING,
                "examples": STRINGS,
                "location": RUNTIME_EXPRESSION,
            },
        ),
        "operation": fields(
            "operation",
            operation_trait
            | {
                "action": {"type": "string", "enum": ["send", "receive"]},
                "channel": ref("Reference"),
                "messages": references,
                "reply": ref_or("reply"),
                "traits": list_of(ref_or("operationTrait")),
            },
            required=("action", "channel"),
        ),
        "operationTrait": fields("operation trait", operation_trait),
        "reply": fields(
            "operation reply",
            {
                "address": ref_or("replyAddress"),
                "channel": ref("Reference"),
                "messages": references,
            },
        ),
        "replyAddress": fields(
            "reply address",
            {"description": STRING, "location": RUNTIME_EXPRESSION},
            required=("location",),
        ),
        "message": fields(
            "message",
            message_trait
            | {"payload": multi_format_schema, "traits": list_of(message_trait_entry)},
        ),
        "messageTrait": fields("message trait", message_trait),
        "securityScheme": _security_scheme(
            _SECURITY_TYPES_2_0 + _SECURITY_TYPES_SASL, version_3=True
        ),
    }
    components = {
        "schemas": components_map(multi_format_schema),
        "servers": components_map(ref_or("server")),
        "channels": components_map(ref_or("channel")),
        "operations": components_map(ref_or("operation")),
        "messages": components_map(ref_or("message")),
        "securitySchemes": components_map(ref_or("securityScheme")),
        "serverVariables": components_map(ref_or("serverVariable")),
        "parameters": components_map(ref_or("parameter")),
        "correlationIds": components_map(ref_or("correlationId")),
        "replies": components_map(ref_or("reply")),
        "replyAddresses": components_map(ref_or("replyAddress")),
        "externalDocs": components_map(ref_or("externalDocs")),
        "tags": components_map(ref_or("tag")),
        "operationTraits": components_map(ref_or("operationTrait")),
        "messageTraits": components_map(ref_or("messageTrait")),
        "serverBindings": components_map(bindings("server bindings object")),
        "channelBindings": components_map(bindings("channel bindings object")),
        "operationBindings": components_map(bindings("operation bindings object")),
        "messageBindings": components_map(bindings("message bindings object")),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **fields(
            "AsyncAPI document",
            {
                "asyncapi": STRING,
                "id": STRING,
                "info": ref("info"),
                "servers": map_of(ref_or("server")),
                "defaultContentType": STRING,
                "channels": map_of(ref_or("channel")),
                "operations": map_of(ref_or("operation")),
                "components": fields("components object", components),
            },
            required=("asyncapi", "info"),
        ),
        "$defs": defs,
    }


def schema_for(version: str) -> Schema:
    """The schema of a supported `asyncapi` version (see SUPPORTED_VERSIONS)."""
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported AsyncAPI version {version!r}")
    major, minor = (int(part) for part in version.split(".")[:2])
    if major == 3:
        return asyncapi_3(minor)
    return asyncapi_2(minor)
