"""Least-privilege broker access rules derived from an AsyncAPI document.

The document says where the application (the service asyncgen generates) receives and
sends; the clients on the other side (devices, other services) do the inverse. From
that come two sets of grants:

- the service subscribes to its receive addresses and publishes to its send addresses,
  its dead-letter address and the replies of its request/reply operations;
- a client publishes to the service's receive addresses and subscribes to its send
  addresses. A parameter marked `x-asyncgen-identity: username` (or `clientId`) is bound
  to the client's identity, so a device may only use the addresses that carry its own
  name; any other parameter stands for every value (`+` in MQTT, `*` in NATS).

`mosquitto_acl` writes them as a mosquitto `acl_file` (`user`/`topic` lines for the
service, `pattern` lines with `%u`/`%c` for the clients), `nats_authorization` as a
nats-server `authorization` block with one `permissions` map per user.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from asyncgen.model.ir import Api, Channel, Operation
from asyncgen.render.protocols import PROFILES

Broker = Literal["mosquitto", "nats"]
Identity = Literal["username", "clientId"]
Action = Literal["publish", "subscribe"]

#: The values `x-asyncgen-identity` may take on a channel parameter.
IDENTITIES: tuple[Identity, ...] = ("username", "clientId")

#: What mosquitto substitutes in `pattern` lines.
_MOSQUITTO_IDENTITY = {"username": "%u", "clientId": "%c"}
#: Where nats-py's requests expect their replies (its default inbox prefix).
NATS_INBOX = "_INBOX.>"


@dataclass(frozen=True)
class Grant:
    """One permission: `action` on `address`, an address template of the document in which
    every `{parameter}` is still to be bound; `why` says which operation needs it."""

    action: Action
    address: str
    why: str
    #: The address is already a broker subject or filter (no parameters to map).
    literal: bool = False


@dataclass
class Rules:
    """What the service and the clients of a document may do."""

    service: list[Grant] = field(default_factory=list)
    clients: list[Grant] = field(default_factory=list)
    #: Identity bindings of the parameters, by name.
    identities: dict[str, Identity] = field(default_factory=dict)
    #: The service answers requests (NATS: publishes to the requesters' reply subjects).
    service_answers: bool = False
    #: The clients answer the service's requests.
    clients_answer: bool = False
    #: The service or the clients make requests and wait in an inbox for the answer.
    service_requests: bool = False
    clients_request: bool = False
    #: JetStream streams and durable consumers the service uses.
    jetstream: list[tuple[str, str]] = field(default_factory=list)
    #: The JetStream stream that keeps the service's dead letters (NATS).
    dead_letter_stream: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class User:
    """A client of the NATS broker: its user name and, for parameters bound to `clientId`,
    the client id it stands for (its user name when not given)."""

    name: str
    client_id: str | None = None


_USER = re.compile(r"^[A-Za-z0-9_@-]+$")


def valid_user(name: str) -> bool:
    """Whether `name` can stand as a user name and as a subject token or topic level."""
    return _USER.match(name) is not None


def _flip(action: Action) -> Action:
    return "subscribe" if action == "publish" else "publish"


def build_rules(
    api: Api,
    protocol: Literal["mqtt", "nats"],
    dead_letter: str,
    dead_letter_stream: str | None = None,
) -> Rules:
    """The grants of the document's operations, seen from the service and from its clients."""
    rules = Rules(dead_letter_stream=dead_letter_stream if protocol == "nats" else None)
    for channel in api.channels:
        for param in channel.parameters:
            if param.identity is not None:
                rules.identities[param.name] = param.identity
    for operation in api.operations:
        _operation_grants(operation, protocol, rules)
    rules.service.append(Grant("publish", dead_letter, "dead letters", literal=True))
    rest = "#" if protocol == "mqtt" else ">"
    rules.service.append(
        Grant(
            "publish",
            f"{dead_letter}{PROFILES[protocol].separator}{rest}",
            "dead letters",
            literal=True,
        )
    )
    if protocol == "mqtt":
        # The service's dead-letter session, from which `dead-letters` collects them.
        rules.service.append(
            Grant("subscribe", f"{dead_letter}/#", "dead-letter session", literal=True)
        )
    return rules


def _operation_grants(operation: Operation, protocol: str, rules: Rules) -> None:
    address = operation.channel.address
    if address is None:
        rules.notes.append(
            f"operation {operation.key!r} has no address: its channel is named at run time; "
            "grant it by hand"
        )
        return
    service_action: Action = "subscribe" if operation.action == "receive" else "publish"
    why = f"operation {operation.key}"
    rules.service.append(Grant(service_action, address, why))
    rules.clients.append(Grant(_flip(service_action), address, why))
    if protocol == "nats":
        stream = operation.extensions.get("x-jetstream")
        if (
            operation.action == "receive"
            and isinstance(stream, dict)
            and isinstance(stream.get("stream"), str)
            and isinstance(stream.get("durable"), str)
        ):
            rules.jetstream.append((stream["stream"], stream["durable"]))
    if operation.reply is None:
        return
    reply: Channel | None = operation.reply.channel
    reply_address = reply.address if reply is not None else None
    answering = operation.action == "receive"
    if reply_address is not None and protocol == "mqtt":
        # The answer goes to an address of the document: the answering side publishes
        # there, the asking side subscribes.
        answer: Action = "publish"
        rules.service.append(
            Grant(answer if answering else _flip(answer), reply_address, f"{why} (reply)")
        )
        rules.clients.append(
            Grant(_flip(answer) if answering else answer, reply_address, f"{why} (reply)")
        )
    elif protocol == "mqtt":
        rules.notes.append(
            f"operation {operation.key!r} replies to the topic each request names (MQTT 5 "
            "response topic): grant those topics by hand"
        )
    if protocol == "nats":
        # Requests carry an inbox subject to answer to; nats-server's `allow_responses`
        # lets the answering side publish there, and only there.
        if answering:
            rules.service_answers = True
            rules.clients_request = True
        else:
            rules.clients_answer = True
            rules.service_requests = True


# -- addresses ------------------------------------------------------------------------------


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- mosquitto ------------------------------------------------------------------------------


def mosquitto_acl(rules: Rules, service_user: str, header: str) -> str:
    """A mosquitto `acl_file`: the service's user with `topic` lines; every other client
    with `pattern` lines, in which `%u` and `%c` stand for its user name and client id."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"# note: {note}" for note in rules.notes]
    lines += ["", f"user {service_user}"]
    lines += _mosquitto_lines("topic", rules.service, {})
    pattern_values = {
        name: _MOSQUITTO_IDENTITY[identity] for name, identity in rules.identities.items()
    }
    client_lines = _mosquitto_lines("pattern", rules.clients, pattern_values)
    if client_lines:
        lines += ["", "# The clients (devices): `pattern` lines apply to every user."]
        lines += client_lines
    return "\n".join(lines) + "\n"


def _mosquitto_lines(keyword: str, grants: list[Grant], values: dict[str, str]) -> list[str]:
    access = {"publish": "write", "subscribe": "read"}
    wanted: dict[str, set[str]] = {}
    for grant in grants:
        topic = (
            grant.address
            if grant.literal
            else PROFILES["mqtt"].address_filter(grant.address, values)
        )
        wanted.setdefault(topic, set()).add(access[grant.action])
    lines = []
    for topic, modes in wanted.items():
        mode = "readwrite" if modes == {"read", "write"} else next(iter(modes))
        lines.append(f"{keyword} {mode} {topic}")
    return lines


# -- nats-server ----------------------------------------------------------------------------


def nats_authorization(rules: Rules, service_user: str, users: list[User], header: str) -> str:
    """A nats-server `authorization` block: the service's user and one entry per client,
    each with the permissions its side of the document needs and nothing else. Passwords
    are read from environment variables named after each user (`$NATS_PASSWORD_<USER>`)."""
    entries = [_nats_user(service_user, _service_permissions(rules))]
    for user in users:
        values = {
            name: (user.name if identity == "username" else user.client_id or user.name)
            for name, identity in rules.identities.items()
        }
        entries.append(_nats_user(user.name, _client_permissions(rules, values)))
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"# note: {note}" for note in rules.notes]
    block = _nats_value({"users": entries}, "")
    lines += [f"authorization {block[0]}", *block[1:]]
    return "\n".join(lines) + "\n"


def password_variable(user: str) -> str:
    """The environment variable that holds a user's password in the NATS block."""
    return "NATS_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", user).upper()


def _service_permissions(rules: Rules) -> dict[str, object]:
    publish = [_subject(grant, {}) for grant in rules.service if grant.action == "publish"]
    subscribe = [_subject(grant, {}) for grant in rules.service if grant.action == "subscribe"]
    if rules.service_requests or rules.jetstream or rules.dead_letter_stream:
        subscribe.append(NATS_INBOX)
    for stream, durable in rules.jetstream:
        publish += _jetstream_subjects(stream, durable)
    if rules.dead_letter_stream:
        # Look up and create the dead-letter stream; its acks come to the inbox.
        publish += [
            f"$JS.API.STREAM.INFO.{rules.dead_letter_stream}",
            f"$JS.API.STREAM.CREATE.{rules.dead_letter_stream}",
        ]
    return _permissions(publish, subscribe, rules.service_answers)


def _client_permissions(rules: Rules, values: dict[str, str]) -> dict[str, object]:
    publish = [_subject(grant, values) for grant in rules.clients if grant.action == "publish"]
    subscribe = [_subject(grant, values) for grant in rules.clients if grant.action == "subscribe"]
    if rules.clients_request:
        subscribe.append(NATS_INBOX)
    return _permissions(publish, subscribe, rules.clients_answer)


def _jetstream_subjects(stream: str, durable: str) -> list[str]:
    """The JetStream API subjects a durable pull consumer of `stream` needs: look up and
    create the stream and the consumer, fetch, and acknowledge."""
    return [
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.CREATE.{stream}",
        f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def _subject(grant: Grant, values: dict[str, str]) -> str:
    return (
        grant.address if grant.literal else PROFILES["nats"].address_filter(grant.address, values)
    )


def _permissions(publish: list[str], subscribe: list[str], answers: bool) -> dict[str, object]:
    permissions: dict[str, object] = {
        "publish": {"allow": _unique(publish)},
        "subscribe": {"allow": _unique(subscribe)},
    }
    if answers:
        permissions["allow_responses"] = True
    return permissions


class _Variable(str):
    """A `$NAME` reference, which nats-server looks up in its environment."""


def _nats_user(name: str, permissions: dict[str, object]) -> dict[str, object]:
    return {
        "user": name,
        "password": _Variable(f"${password_variable(name)}"),
        "permissions": permissions,
    }


def _nats_value(value: object, indent: str) -> list[str]:
    """`value` in nats-server's configuration format, one entry a line."""
    inner = indent + "  "
    if isinstance(value, dict):
        lines = ["{"]
        for key, item in value.items():
            rest = _nats_value(item, inner)
            lines += [f"{inner}{key}: {rest[0]}", *rest[1:]]
        return [*lines, f"{indent}}}"]
    if isinstance(value, list):
        if not value:
            return ["[]"]
        lines = ["["]
        for item in value:
            rest = _nats_value(item, inner)
            lines += [f"{inner}{rest[0]}", *rest[1:]]
        return [*lines, f"{indent}]"]
    if isinstance(value, _Variable):
        return [str(value)]
    return [json.dumps(value)]
