"""What the templates see: the `Api` with every name already made a Python identifier."""

from __future__ import annotations

import keyword
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from asyncgen.asyncapi import Protocol, regex_engine, subject_address
from asyncgen.errors import Level, Location, Problem
from asyncgen.model import Api, Channel, Message, Operation, Parameter
from asyncgen.model.ir import RAW_TYPES, PayloadKind
from asyncgen.render.models import MODEL_RESERVED
from asyncgen.render.naming import (
    MAX_FILE_NAME,
    Namer,
    comment,
    dotenv_value,
    pascal,
    py_literal,
    snake,
    toml_string,
)
from asyncgen.render.protocols import PROFILES, MqttClientName, ProtocolProfile
from asyncgen.runtime import VERSION as RUNTIME_VERSION

#: Names the generated modules define themselves; channel and handler names avoid them.
_GENERATED_NAMES = {
    "runtime",
    "Accepted",
    "Address",
    "NoParams",
    "Handlers",
    "MessageContext",
    "Publishers",
    "Transport",
    "Service",
    "Settings",
    "DispatchResult",
    "Route",
    "OperationStats",
    "main",
    "models",
    "channels",
    "handlers",
    "publishers",
    "service",
    "settings",
    "logging",
    "logger",
    "handle",
}
#: Module-level names of channels.py that channel constants must not replace.
_CHANNELS_MODULE_NAMES = {
    "MQTT_TOPIC", "NATS_SUBJECT", "Literal", "BaseModel", "ConfigDict", "Field",
}  # fmt: skip
#: The public attributes of pydantic's `BaseModel` (2.x) outside its `model_` namespace
#: (which `Namer`'s reserved prefixes keep clear): a field must not shadow them. Written
#: out rather than read from the pydantic at hand, so that the generated names do not
#: depend on which pydantic is installed beside asyncgen, and generating does not import
#: it; a test checks the list against the installed pydantic. (A name made from spec
#: text never starts with `_`.)
BASE_MODEL_ATTRIBUTES = frozenset(
    {
        "construct", "copy", "dict", "from_orm", "json", "parse_file", "parse_obj",
        "parse_raw", "schema", "schema_json", "update_forward_refs", "validate",
    }
)  # fmt: skip
#: Names a parameter's attribute must avoid: pydantic's own attributes, and the locals
#: and keyword arguments of the publisher methods that take parameters as arguments.
_PARAM_RESERVED = (
    _GENERATED_NAMES
    | BASE_MODEL_ATTRIBUTES
    | {"topic", "subject", "reply", "timeout", "encode", "message"}
)
#: Packages a generated project imports: its own package must not shadow them.
_TAKEN_PACKAGES = {
    "aiomqtt", "asyncgen", "nats", "paho", "pydantic", "pydantic_core", "pydantic_settings",
    "pytest", "tests", "typing_extensions",
}  # fmt: skip
#: Host names and IP addresses (IPv6 in brackets); anything else is not a server host.
_HOST = re.compile(r"[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]")


#: How a publisher turns its `message` into bytes, by payload kind.
_ENCODED: dict[PayloadKind, str] = {
    "json": "encode(message)",
    "msgpack": 'encode(message, "msgpack")',
    "text": 'message.encode("utf-8")',
    "bytes": "message",
}


@dataclass
class ParamView:
    name: str
    attr: str
    type_expr: str
    pattern: str | None
    description: str | None
    example: str
    #: Whether `example` is a value the parameter accepts (else the generated tests
    #: leave out the examples of its channel).
    example_ok: bool = True
    regex_engine: str | None = None

    @property
    def field_args(self) -> str:
        """The arguments of the parameter's `Field(...)`, as Python source."""
        args = [f"alias={py_literal(self.name)}"]
        if self.description:
            args.append(f"description={py_literal(self.description)}")
        if self.type_expr == "str":
            args.append("min_length=1")
            if self.pattern:
                args.append(f"pattern={py_literal(self.pattern)}")
        return ", ".join(args)


@dataclass
class ChannelView:
    key: str
    const: str
    params_class: str
    address: str
    subscription: str
    params: list[ParamView]
    description: str | None

    @property
    def python_regex(self) -> bool:
        """Whether a parameter's pattern needs Python's regex engine (look-arounds, ...)."""
        return any(param.regex_engine == "python-re" for param in self.params)

    @property
    def sample_address(self) -> str:
        """The address with an example value for every parameter."""
        address = self.address
        for param in self.params:
            address = address.replace("{" + param.name + "}", param.example)
        return address


@dataclass
class ExampleView:
    name: str
    topic: str
    payload: Any
    params: dict[str, str]
    #: How the payload goes on the wire (the operation's payload kind).
    kind: PayloadKind = "json"


@dataclass
class MessageView:
    name: str
    class_name: str
    summary: str | None
    #: The payload schema's name in `Api.schemas`.
    schema: str = ""
    #: Fields whose `const`/`enum` values tell this message apart from the others of its
    #: operation, as Python source of the runtime's `Accepted.match`; "" when none.
    match: str = ""


@dataclass
class OperationView:
    key: str
    func: str
    module: str
    protocol_name: str
    action: str
    channel: ChannelView
    messages: list[MessageView]
    message_type: str
    summary: str | None
    description: str | None
    qos: int
    retain: bool
    queue: str | None
    jetstream: dict[str, Any] | None
    reply_type: str | None = None
    reply_messages: list[MessageView] = field(default_factory=list)
    reply_channel: ChannelView | None = None
    reply_location: str | None = None
    reply_example: Any = None
    examples: list[ExampleView] = field(default_factory=list)
    handler_class: str = ""
    payload_kind: PayloadKind = "json"

    @property
    def accepted(self) -> list[str]:
        """The runtime's `Accepted(...)` of each message the operation takes, as source.

        Text and bytes reach the handler as `str` or `bytes` whatever the message; JSON
        and MessagePack messages are validated into their models, tried in turn."""
        if self.payload_kind in RAW_TYPES:
            return [f"Accepted({RAW_TYPES[self.payload_kind]}, {py_literal(self.payload_kind)})"]
        accepted = []
        for message in self.messages:
            args = [f"models.{message.class_name}"]
            if self.payload_kind != "json":
                args.append(py_literal(self.payload_kind))
            if message.match:
                args.append(f"match={message.match}")
            accepted.append(f"Accepted({', '.join(args)})")
        return accepted

    @property
    def encoded(self) -> str:
        """The publisher's expression of `message` as the bytes to send."""
        return _ENCODED[self.payload_kind]

    @property
    def uses_models(self) -> bool:
        """Whether its message or reply types are models (not `str` or `bytes`)."""
        return self.payload_kind not in RAW_TYPES or self.reply_type is not None

    @property
    def publisher_params(self) -> str:
        """Keyword parameters of this operation's publisher, as Python source."""
        return ", ".join(f"{param.attr}: {param.type_expr}" for param in self.channel.params)


@dataclass
class ProjectContext:
    """Everything a template may use."""

    protocol: Protocol
    package: str
    project_name: str
    title: str
    api_version: str
    description: str | None
    asyncapi: str
    spec_path: str
    tool_version: str
    server_host: str
    server_port: int
    client_id: str
    channels: list[ChannelView]
    receive: list[OperationView]
    send: list[OperationView]
    class_names: dict[str, str]
    warnings: list[Problem] = field(default_factory=list)
    #: Options of the first generation that `[tool.asyncgen]` keeps for the next ones:
    #: folders relative to the project.
    templates_path: str | None = None
    refs_root_path: str | None = None
    allow_outside_refs: bool = False
    allow_remote_refs: bool = False
    #: The MQTT client library a generated MQTT service runs on unless MQTT_CLIENT says
    #: otherwise.
    mqtt_client: MqttClientName = "aiomqtt"

    @property
    def client_extra_requirements(self) -> list[str]:
        """What the default MQTT client needs besides the base dependencies (the
        requirement of its extra), so that the project runs as generated."""
        return [req for name, req in self.proto.extras if name == self.mqtt_client]

    @property
    def operations(self) -> list[OperationView]:
        return self.receive + self.send

    @property
    def description_toml(self) -> str:
        """The project's one-line description, as a TOML string."""
        return toml_string(f"{comment(self.title)} service, generated by asyncgen")

    @property
    def spec_path_toml(self) -> str:
        """Where the spec is, relative to the project, as a TOML string."""
        return toml_string(self.spec_path)

    @property
    def templates_path_toml(self) -> str:
        return toml_string(self.templates_path or "")

    @property
    def refs_root_path_toml(self) -> str:
        return toml_string(self.refs_root_path or "")

    @property
    def client_id_env(self) -> str | None:
        """The client id as a `.env` value, or None when a `.env` line cannot hold it."""
        return dotenv_value(self.client_id)

    @property
    def address_word(self) -> str:
        return self.proto.address_word

    @property
    def proto(self) -> ProtocolProfile:
        """What the templates need to know of the protocol."""
        return PROFILES[self.protocol]

    @property
    def runtime_version(self) -> int:
        return RUNTIME_VERSION

    @property
    def uses_msgpack(self) -> bool:
        return self.receive_msgpack or self.send_msgpack

    @property
    def receive_uses_models(self) -> bool:
        return any(op.uses_models for op in self.receive)

    @property
    def send_uses_models(self) -> bool:
        return any(op.uses_models for op in self.send)

    @property
    def receive_msgpack(self) -> bool:
        return any(op.payload_kind == "msgpack" for op in self.receive)

    @property
    def send_msgpack(self) -> bool:
        return any(op.payload_kind == "msgpack" for op in self.send)

    @property
    def raw_examples(self) -> bool:
        """Whether some examples are not sent as JSON (the tests then take bytes too)."""
        return any(example.kind != "json" for op in self.receive for example in op.examples)

    @property
    def json_receive(self) -> OperationView | None:
        """The first receive operation that takes JSON, if any."""
        return next((op for op in self.receive if op.payload_kind == "json"), None)

    @property
    def periodic_send(self) -> OperationView | None:
        """The send operation the lifespan stub shows as periodic work: the first
        retained one without parameters (a heartbeat, say), else the first without."""
        plain = [op for op in self.send if not op.channel.params and op.payload_kind == "json"]
        return next((op for op in plain if op.retain), plain[0] if plain else None)

    @property
    def send_uses_literal(self) -> bool:
        return any(p.type_expr.startswith("Literal") for op in self.send for p in op.channel.params)

    @property
    def uses_literal(self) -> bool:
        return any(p.type_expr.startswith("Literal") for c in self.channels for p in c.params)


def subscription_for(address: str, protocol: Protocol) -> str:
    """The subscription of an address: `+` (MQTT) or `*` (NATS) for each parameter level.

    `devices/{deviceId}/telemetry` -> `devices/+/telemetry`, or `devices.*.telemetry`.
    """
    return PROFILES[protocol].address_filter(address)


def _accepts(param: Parameter, value: str, protocol: Protocol) -> bool:
    """Whether `value` is a concrete value of `param` in an address of `protocol`."""
    if not value or PROFILES[protocol].forbidden.intersection(value):
        return False
    if param.enum and value not in param.enum:
        return False
    if param.pattern:
        try:
            return re.search(param.pattern, value) is not None
        except re.error:
            return True
    return True


def _param_type(param: Parameter) -> str:
    if param.enum:
        return "Literal[" + ", ".join(repr(value) for value in param.enum) + "]"
    return "str"


def _example_value(param: Parameter, protocol: Protocol) -> tuple[str, bool]:
    """A value of `param` for example addresses, and whether the parameter accepts it."""
    for candidate in [*param.examples, param.default, *(param.enum or []), "example"]:
        if candidate is not None and _accepts(param, candidate, protocol):
            return candidate, True
    return "example", False


def _example_name(name: str) -> str:
    """An example's name as a test id: one line, short."""
    return comment(name, limit=60).strip()


class _ContextBuilder:
    def __init__(self, api: Api, protocol: Protocol) -> None:
        self.api = api
        self.protocol = protocol
        self._operations = {operation.key: operation for operation in api.operations}
        self.module_names = Namer(_GENERATED_NAMES)
        self.model_names = Namer(MODEL_RESERVED | _GENERATED_NAMES)
        self.class_names: dict[str, str] = {
            name: self.model_names.pascal(name, "Payload") for name in api.schemas
        }
        self.channel_names = Namer(
            _GENERATED_NAMES | _CHANNELS_MODULE_NAMES | set(self.class_names.values())
        )
        # Receive operations' names are also the file names of their handler modules.
        self.handler_names = Namer(_GENERATED_NAMES, max_length=MAX_FILE_NAME)
        self.handler_classes = Namer(_GENERATED_NAMES)
        self.channels: dict[int, ChannelView] = {}
        self.warnings: list[Problem] = []

    def channel(self, channel: Channel) -> ChannelView | None:
        if channel.address is None:
            return None
        if id(channel) in self.channels:
            return self.channels[id(channel)]
        attrs = Namer(_PARAM_RESERVED, reserved_prefixes=("model_",))
        params = [self.param(param, channel, attrs) for param in channel.parameters]
        view = ChannelView(
            key=channel.key,
            const=self.channel_names.constant(channel.key, "CHANNEL"),
            params_class=(
                self.channel_names.pascal(f"{channel.key} Params", "ChannelParams")
                if params
                else "NoParams"
            ),
            address=subject_address(channel.address, self.protocol),
            subscription=subscription_for(channel.address, self.protocol),
            params=params,
            description=channel.description,
        )
        self.channels[id(channel)] = view
        return view

    def param(self, param: Parameter, channel: Channel, attrs: Namer) -> ParamView:
        # The validate stage refused patterns that no engine reads.
        pattern = param.pattern
        engine = regex_engine(pattern)[0] if pattern is not None else None
        example, example_ok = _example_value(param, self.protocol)
        return ParamView(
            name=param.name,
            attr=attrs.snake(param.name, "param"),
            type_expr=_param_type(param),
            pattern=pattern,
            description=comment(param.description),
            example=example,
            example_ok=example_ok,
            regex_engine=engine,
        )

    def warn(self, location: Location | None, message: str) -> None:
        if location is not None:
            self.warnings.append(Problem(location, message, Level.WARNING))

    def message(self, message: Message) -> MessageView:
        assert message.payload is not None
        return MessageView(
            name=message.name,
            class_name=self.class_names[message.payload],
            summary=message.summary or message.title,
            schema=message.payload,
        )

    def fixed_fields(self, view: MessageView) -> dict[str, tuple[Any, ...]]:
        """The top-level properties of a message's schema fixed by `const` or `enum`."""
        schema = self.api.schemas.get(view.schema)
        properties = schema.get("properties") if isinstance(schema, dict) else None
        fixed: dict[str, tuple[Any, ...]] = {}
        for name, prop in (properties if isinstance(properties, dict) else {}).items():
            if not isinstance(prop, dict):
                continue
            if "const" in prop:
                fixed[name] = (prop["const"],)
            elif isinstance(prop.get("enum"), list) and prop["enum"]:
                fixed[name] = tuple(prop["enum"])
        return fixed

    def discriminate(self, messages: list[MessageView]) -> None:
        """Give an operation's messages the field that tells them apart, when their
        schemas have one: a property every message fixes with `const` or `enum`, to more
        than one value among them. The runtime tries first the messages whose value
        matches, and never those whose value does not."""
        if len(messages) < 2:
            return
        fixed = [self.fixed_fields(view) for view in messages]
        for name in fixed[0]:
            if not all(name in values for values in fixed):
                continue
            if len({repr(v) for values in fixed for v in values[name]}) < 2:
                continue  # one value for all: it tells nothing apart
            for view, values in zip(messages, fixed, strict=True):
                view.match = "{" + f"{py_literal(name)}: {py_literal(values[name])}" + "}"
            return

    def warn_overlaps(self, receive: list[OperationView]) -> None:
        """Warn about receive operations on one address whose messages can be the same:
        the runtime gives such a message to the first of them in the document."""
        # Only operations on one subscription are compared: by subscription, in document
        # order, so that thousands of channels cost no pairs of unrelated ones.
        alike: dict[str, list[OperationView]] = {}
        place: list[int] = []
        for view in receive:
            group = alike.setdefault(view.channel.subscription, [])
            place.append(len(group))
            group.append(view)
        for first, index in zip(receive, place, strict=True):
            for second in alike[first.channel.subscription][index + 1 :]:
                clashes = self._clashes(first.messages, second.messages)
                if clashes:
                    operation = self._operations.get(second.key)
                    self.warn(
                        operation.location if operation is not None else None,
                        f"operations {first.key!r} and {second.key!r} both receive on "
                        f"{first.channel.address!r} and their messages overlap "
                        f"({', '.join(clashes)}); a message that fits both goes to "
                        f"{first.key!r}",
                    )

    def _clashes(self, first: list[MessageView], second: list[MessageView]) -> list[str]:
        """Pairs of messages of two operations that one payload could match."""
        clashes = []
        for a in first:
            fixed_a = self.fixed_fields(a)
            for b in second:
                fixed_b = self.fixed_fields(b)
                same = a.class_name == b.class_name
                shared = [
                    name
                    for name in fixed_a.keys() & fixed_b.keys()
                    if {repr(v) for v in fixed_a[name]} & {repr(v) for v in fixed_b[name]}
                ]
                if same or shared:
                    clashes.append(a.name if same else f"{a.name} ~ {b.name}")
        return clashes

    def examples(self, operation: Operation, channel: ChannelView) -> list[ExampleView]:
        result: list[ExampleView] = []
        params = {param.name: param.example for param in channel.params}
        topic = channel.sample_address
        unfit = [param.name for param in channel.params if not param.example_ok]
        if unfit and any(message.examples for message in operation.messages):
            self.warn(
                operation.location,
                f"no valid example value for parameter(s) {', '.join(map(repr, unfit))} of "
                f"{channel.address!r}; the examples of operation {operation.key!r} are left "
                "out of the generated tests",
            )
            return result
        kind = operation.kind
        for message in operation.messages:
            for index, example in enumerate(message.examples):
                if not example.has_payload:
                    continue
                if not example.fits:
                    continue  # the validate stage warned of it
                result.append(
                    ExampleView(
                        name=_example_name(example.name or f"{message.name} example {index + 1}"),
                        topic=topic,
                        # Text and bytes are sent as the string's UTF-8 bytes.
                        payload=example.payload.encode() if kind in RAW_TYPES else example.payload,
                        params=params,
                        kind=kind,
                    )
                )
        return result

    def operation(self, operation: Operation) -> OperationView | None:
        channel = self.channel(operation.channel)
        if channel is None:
            return None
        messages = [self.message(message) for message in operation.messages]
        self.discriminate(messages)
        kind = operation.kind
        if len({message.kind for message in operation.messages}) > 1:
            self.warn(
                operation.location,
                f"the messages of operation {operation.key!r} have content types of different "
                "kinds; its handler receives the payload as bytes",
            )
        func = self.handler_names.snake(operation.key, "operation")
        view = OperationView(
            key=operation.key,
            func=func,
            module=func,
            protocol_name=operation.key,
            action=operation.action,
            channel=channel,
            messages=messages,
            message_type=RAW_TYPES.get(kind)
            or " | ".join(f"models.{m.class_name}" for m in messages),
            summary=operation.summary,
            description=operation.description,
            qos=self.qos(operation),
            retain=self.retain(operation),
            queue=self.queue(operation),
            jetstream=self.jetstream(operation),
            handler_class=self.handler_classes.pascal(f"{func} handler", "Handler"),
            payload_kind=kind,
        )
        if operation.reply is not None:
            view.reply_messages = [self.message(message) for message in operation.reply.messages]
            view.reply_type = " | ".join(f"models.{m.class_name}" for m in view.reply_messages)
            if operation.reply.channel is not None:
                view.reply_channel = self.channel(operation.reply.channel)
            view.reply_location = operation.reply.address_location
            first = operation.reply.messages[0]
            valid = [e for e in first.examples if e.has_payload and e.fits]
            if valid:
                view.reply_example = valid[0].payload
        if operation.action == "receive":
            view.examples = self.examples(operation, channel)
        return view

    # -- bindings and extensions, as the validate stage checked them ------------------

    def qos(self, operation: Operation) -> int:
        value = operation.binding("mqtt", "qos", 0)
        return int(value or 0) if self.protocol == "mqtt" else 0

    def retain(self, operation: Operation) -> bool:
        return self.protocol == "mqtt" and operation.binding("mqtt", "retain", False) is True

    def queue(self, operation: Operation) -> str | None:
        value = operation.binding("nats", "queue")
        return value if self.protocol == "nats" and isinstance(value, str) else None

    def jetstream(self, operation: Operation) -> dict[str, str] | None:
        value = operation.extensions.get("x-jetstream")
        if self.protocol != "nats" or not isinstance(value, dict):
            return None
        return {"stream": value["stream"], "durable": value["durable"]}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _server(api: Api, protocol: Protocol) -> tuple[str, int, str | None]:
    """Host and port of the first server of `protocol` (else localhost and the protocol's
    port), and why the server's host was not used, if it was not."""
    default_port = 1883 if protocol == "mqtt" else 4222
    for server in api.servers:
        if server.protocol.startswith(protocol) and server.host:
            address = server.host.split("/")[0]
            if address.startswith("[") and "]" in address:
                end = address.index("]") + 1
                host, port = address[:end], address[end:].lstrip(":")
            else:
                host, _, port = address.partition(":")
            number = int(port) if port.isdigit() and 0 < int(port) < 65536 else default_port
            if not _HOST.fullmatch(host):
                reason = (
                    f"server {server.key!r}: {_short(server.host)} is not a host name; "
                    "the generated settings default to localhost"
                )
                return "localhost", number, reason
            return host, number, None
    return "localhost", default_port, None


def _client_id(api: Api, package: str) -> str:
    for server in api.servers:
        binding = server.bindings.get("mqtt")
        if isinstance(binding, dict) and isinstance(binding.get("clientId"), str):
            return str(binding["clientId"])
    return package.replace("_", "-")


def build_context(
    api: Api,
    protocol: Protocol,
    package: str,
    spec_path: str,
    tool_version: str,
    *,
    templates_path: str | None = None,
    refs_root_path: str | None = None,
    allow_outside_refs: bool = False,
    allow_remote_refs: bool = False,
    mqtt_client: MqttClientName = "aiomqtt",
) -> ProjectContext:
    """Name everything in `api` for the templates of `protocol`."""
    builder = _ContextBuilder(api, protocol)
    receive: list[OperationView] = []
    send: list[OperationView] = []
    for operation in api.operations:
        view = builder.operation(operation)
        if view is None:
            continue  # its channel has no address: the validate stage warned of it
        (receive if view.action == "receive" else send).append(view)
    builder.warn_overlaps(receive)
    channels = [builder.channel(channel) for channel in api.channels]
    host, port, problem = _server(api, protocol)
    if problem is not None:
        builder.warn(_document_location(api, "/servers"), problem)
    return ProjectContext(
        protocol=protocol,
        package=package,
        project_name=package.replace("_", "-"),
        # A title is one line wherever it is shown: a docstring's first line, a heading.
        title=" ".join(api.title.split()),
        api_version=api.version,
        description=api.description,
        asyncapi=api.asyncapi,
        spec_path=spec_path,
        tool_version=tool_version,
        server_host=host,
        server_port=port,
        client_id=_client_id(api, package),
        channels=[view for view in channels if view is not None],
        receive=receive,
        send=send,
        class_names=builder.class_names,
        warnings=builder.warnings,
        templates_path=templates_path,
        refs_root_path=refs_root_path,
        allow_outside_refs=allow_outside_refs,
        allow_remote_refs=allow_remote_refs,
        mqtt_client=mqtt_client,
    )


def _document_location(api: Api, pointer: str) -> Location | None:
    """A place in the spec's root file (the IR knows that file only through locations)."""
    located: list[Location | None] = [
        *(operation.location for operation in api.operations),
        *(channel.location for channel in api.channels),
        *(message.location for message in api.messages),
    ]
    for location in located:
        if location is not None:
            return Location(location.file, pointer)
    return None


def package_name(title: str) -> str:
    """A distribution-safe package name from the API title.

    Never a keyword, and never the name of a module the project imports (a title such
    as "Pydantic" or "JSON" would otherwise make a package that shadows it).
    """
    name = re.sub(r"_+", "_", snake(title))[:MAX_FILE_NAME].rstrip("_") or "asyncapi_service"
    if name[0].isdigit():
        name = f"service_{name}"
    if (
        keyword.iskeyword(name)
        or keyword.issoftkeyword(name)
        or name in sys.stdlib_module_names
        or name in _TAKEN_PACKAGES
    ):
        name = f"{name}_service"
    return name


__all__ = [
    "ProjectContext",
    "Protocol",
    "build_context",
    "package_name",
    "pascal",
    "subscription_for",
]
