"""What the templates see: the `Api` with every name already made a Python identifier."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema

from asyncgen.errors import Level, Problem
from asyncgen.model import Api, Channel, Message, Operation, Parameter
from asyncgen.render.models import MODEL_RESERVED, bundle
from asyncgen.render.naming import Namer, comment, pascal, py_literal, snake

Protocol = Literal["mqtt", "nats"]

#: Names the generated modules define themselves; channel and handler names avoid them.
_GENERATED_NAMES = {
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
_MQTT_SEPARATOR = "/"
_NATS_SEPARATOR = "."


@dataclass
class ParamView:
    name: str
    attr: str
    type_expr: str
    pattern: str | None
    description: str | None
    example: str

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


@dataclass
class MessageView:
    name: str
    class_name: str
    summary: str | None


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

    @property
    def handler_class(self) -> str:
        return pascal(self.func) + "Handler"

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
    version: str
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

    @property
    def operations(self) -> list[OperationView]:
        return self.receive + self.send

    @property
    def address_word(self) -> str:
        return "topic" if self.protocol == "mqtt" else "subject"

    @property
    def send_uses_literal(self) -> bool:
        return any(p.type_expr.startswith("Literal") for op in self.send for p in op.channel.params)

    @property
    def uses_literal(self) -> bool:
        return any(p.type_expr.startswith("Literal") for c in self.channels for p in c.params)


def subject_address(address: str, protocol: Protocol) -> str:
    """The address as the protocol writes it: NATS subjects use `.` between tokens.

    An address written with `/` is mapped the way nats-server's MQTT gateway maps an
    MQTT topic, so one spec serves MQTT devices and NATS services alike.
    """
    if protocol == "nats" and "/" in address:
        return address.strip("/").replace("/", ".")
    return address


def subscription_for(address: str, protocol: Protocol) -> str:
    """The subscription of an address: `+` (MQTT) or `*` (NATS) for each parameter level.

    `devices/{deviceId}/telemetry` -> `devices/+/telemetry`, or `devices.*.telemetry`.
    """
    separator = _MQTT_SEPARATOR if protocol == "mqtt" else _NATS_SEPARATOR
    wildcard = "+" if protocol == "mqtt" else "*"
    levels = subject_address(address, protocol).split(separator)
    return separator.join(wildcard if "{" in level else level for level in levels)


def _param_type(param: Parameter) -> str:
    if param.enum:
        return "Literal[" + ", ".join(repr(value) for value in param.enum) + "]"
    return "str"


def _example_value(param: Parameter) -> str:
    for candidate in [*param.examples, param.default, *(param.enum or [])]:
        if candidate:
            return candidate
    return "example"


class _ContextBuilder:
    def __init__(self, api: Api, protocol: Protocol) -> None:
        self.api = api
        self.protocol = protocol
        self.module_names = Namer(_GENERATED_NAMES)
        self.model_names = Namer(MODEL_RESERVED | _GENERATED_NAMES)
        self.class_names: dict[str, str] = {
            name: self.model_names.pascal(name, "Payload") for name in api.schemas
        }
        self.channel_names = Namer(_GENERATED_NAMES | set(self.class_names.values()))
        self.handler_names = Namer(_GENERATED_NAMES)
        self.channels: dict[int, ChannelView] = {}
        self.warnings: list[Problem] = []
        self._validator_schema = bundle(api.schemas, self.class_names)

    def channel(self, channel: Channel) -> ChannelView | None:
        if channel.address is None:
            return None
        if id(channel) in self.channels:
            return self.channels[id(channel)]
        attrs = Namer(_GENERATED_NAMES | {"model_config"})
        params = [
            ParamView(
                name=param.name,
                attr=attrs.snake(param.name, "param"),
                type_expr=_param_type(param),
                pattern=param.pattern,
                description=comment(param.description),
                example=_example_value(param),
            )
            for param in channel.parameters
        ]
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

    def message(self, message: Message) -> MessageView:
        assert message.payload is not None
        return MessageView(
            name=message.name,
            class_name=self.class_names[message.payload],
            summary=message.summary or message.title,
        )

    def examples(self, operation: Operation, channel: ChannelView) -> list[ExampleView]:
        result: list[ExampleView] = []
        params = {param.name: param.example for param in channel.params}
        topic = channel.sample_address
        for message in operation.messages:
            for index, example in enumerate(message.examples):
                if not example.has_payload:
                    continue
                error = self._example_error(message, example.payload)
                if error is not None:
                    assert message.location is not None
                    self.warnings.append(
                        Problem(
                            message.location,
                            f"example {index + 1} of message {message.name!r} does not match "
                            f"its payload schema ({error}); left out of the "
                            "generated tests",
                            Level.WARNING,
                        )
                    )
                    continue
                result.append(
                    ExampleView(
                        name=example.name or f"{message.name} example {index + 1}",
                        topic=topic,
                        payload=example.payload,
                        params=params,
                    )
                )
        return result

    def _example_error(self, message: Message, payload: Any) -> str | None:
        """Why `payload` does not match the message's schema, or None when it does."""
        assert message.payload is not None
        schema = {**self._validator_schema, "$ref": f"#/$defs/{self.class_names[message.payload]}"}
        validator = jsonschema.Draft7Validator(
            schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
        )
        error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
        return None if error is None else error.message[:200]

    def _valid(self, message: Message, payload: Any) -> bool:
        return self._example_error(message, payload) is None

    def operation(self, operation: Operation) -> OperationView | None:
        channel = self.channel(operation.channel)
        if channel is None:
            return None
        messages = [self.message(message) for message in operation.messages]
        func = self.handler_names.snake(operation.key, "operation")
        jetstream = operation.extensions.get("x-jetstream")
        view = OperationView(
            key=operation.key,
            func=func,
            module=func,
            protocol_name=operation.key,
            action=operation.action,
            channel=channel,
            messages=messages,
            message_type=" | ".join(f"models.{m.class_name}" for m in messages),
            summary=operation.summary,
            description=operation.description,
            qos=int(operation.binding("mqtt", "qos", 0) or 0),
            retain=bool(operation.binding("mqtt", "retain", False)),
            queue=operation.binding("nats", "queue"),
            jetstream=jetstream if isinstance(jetstream, dict) else None,
        )
        if operation.reply is not None:
            view.reply_messages = [self.message(message) for message in operation.reply.messages]
            view.reply_type = " | ".join(f"models.{m.class_name}" for m in view.reply_messages)
            if operation.reply.channel is not None:
                view.reply_channel = self.channel(operation.reply.channel)
            view.reply_location = operation.reply.address_location
            first = operation.reply.messages[0]
            valid = [e for e in first.examples if e.has_payload and self._valid(first, e.payload)]
            if valid:
                view.reply_example = valid[0].payload
        if operation.action == "receive":
            view.examples = self.examples(operation, channel)
        return view


def _server(api: Api, protocol: Protocol) -> tuple[str, int]:
    default_port = 1883 if protocol == "mqtt" else 4222
    for server in api.servers:
        if server.protocol.startswith(protocol) and server.host:
            host, _, port = server.host.partition(":")
            port = port.split("/")[0]
            return host, int(port) if port.isdigit() else default_port
    return "localhost", default_port


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
) -> ProjectContext:
    """Name everything in `api` for the templates of `protocol`."""
    builder = _ContextBuilder(api, protocol)
    receive: list[OperationView] = []
    send: list[OperationView] = []
    for operation in api.operations:
        view = builder.operation(operation)
        if view is None:
            if operation.location is not None:
                builder.warnings.append(
                    Problem(
                        operation.location,
                        f"operation {operation.key!r} has a channel without an address; skipped",
                        Level.WARNING,
                    )
                )
            continue
        (receive if view.action == "receive" else send).append(view)
    channels = [builder.channel(channel) for channel in api.channels]
    host, port = _server(api, protocol)
    return ProjectContext(
        protocol=protocol,
        package=package,
        project_name=package.replace("_", "-"),
        title=api.title,
        version=api.version,
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
    )


def package_name(title: str) -> str:
    """A distribution-safe package name from the API title."""
    name = snake(title) or "asyncapi_service"
    if name[0].isdigit():
        name = f"service_{name}"
    return re.sub(r"_+", "_", name)


__all__ = ["ProjectContext", "build_context", "package_name", "pascal", "subscription_for"]
