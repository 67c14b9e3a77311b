"""Rules AsyncAPI states in prose that its JSON Schema cannot check, and what generation
needs of a document beyond them: every check here runs before anything is generated.

The checks read the document defensively (any value may have the wrong shape): they run
together with the structure check, so that every problem is reported in one run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asyncgen.asyncapi import (
    Protocol,
    address_parameters,
    address_problem,
    regex_engine,
    subject_address,
)
from asyncgen.errors import Level, Problem, SpecError
from asyncgen.load import Document, Ref
from asyncgen.load.source import escape_token, unescape_token

# Keywords whose values are literal data: a `$ref` key in there is not a reference.
_DATA_KEYS = {"enum", "const", "default", "examples", "example"}


def _walk_refs(doc: Document, problems: list[Problem]) -> None:
    """Every `$ref` reachable from the root resolves (across files, cycle-safe)."""
    seen: set[Ref] = set()
    # Places as (file, pointer): a `Ref` is made only where a `$ref` is found.
    stack: list[tuple[Any, Path, str]] = [(doc.data, doc.root.path, "")]
    while stack:
        value, file, pointer = stack.pop()
        if isinstance(value, dict):
            if isinstance(value.get("$ref"), str):
                try:
                    target, target_at = doc.resolve(value, Ref(file, pointer))
                except SpecError as exc:
                    problems.extend(exc.problems)
                    continue
                if target_at not in seen:
                    seen.add(target_at)
                    stack.append((target, target_at.file, target_at.pointer))
                continue
            for key, item in value.items():
                if key not in _DATA_KEYS and isinstance(item, dict | list):
                    stack.append((item, file, f"{pointer}/{escape_token(key)}"))
        elif isinstance(value, list):
            stack.extend(
                (item, file, f"{pointer}/{index}")
                for index, item in enumerate(value)
                if isinstance(item, dict | list)
            )


def _declared(doc: Document, channel: dict[str, Any], at: Ref) -> set[str] | None:
    params = channel.get("parameters")
    if params is None:
        return set()
    if isinstance(params, dict) and "$ref" in params:
        try:
            params, _ = doc.resolve(params, at.child("parameters"))
        except SpecError:
            return None
    return set(params) if isinstance(params, dict) else None


def _check_addresses(doc: Document, problems: list[Problem], version: int) -> None:
    channels = doc.data.get("channels")
    if not isinstance(channels, dict):
        return
    root = Ref(doc.root.path)
    for key, channel in channels.items():
        at = root.child("channels", key)
        try:
            channel, at = doc.resolve(channel, at)
        except SpecError:
            continue  # reported by the ref walk
        if not isinstance(channel, dict):
            continue
        address = key if version == 2 else channel.get("address")
        if not isinstance(address, str):
            continue
        declared = _declared(doc, channel, at)
        if declared is None:
            continue
        if channel.get("parameters") is None and address_parameters(address):
            # The reference parser accepts an address whose channel has no `parameters`
            # at all: its parameters are then plain strings.
            names = ", ".join(f"{{{name}}}" for name in address_parameters(address))
            problems.append(
                Problem(
                    doc.location(at),
                    f"address {address!r} uses {names} but the channel has no `parameters`; "
                    "taken as string parameters",
                    Level.WARNING,
                )
            )
            continue
        for name in address_parameters(address):
            if name not in declared:
                problems.append(
                    doc.problem(
                        at,
                        f"address {address!r} uses parameter {{{name}}}, which the channel "
                        "does not declare under `parameters`",
                    )
                )
        _check_identities(doc, channel, at, problems)
        for name in sorted(declared - set(address_parameters(address))):
            problems.append(
                Problem(
                    doc.location(at.child("parameters", name)),
                    f"parameter {name!r} is declared but address {address!r} does not use it",
                    Level.WARNING,
                )
            )


def _check_identities(
    doc: Document, channel: dict[str, Any], at: Ref, problems: list[Problem]
) -> None:
    """`x-asyncgen-identity` on a parameter names the client identity it is bound to."""
    params = channel.get("parameters")
    if not isinstance(params, dict):
        return
    for name, param in params.items():
        try:
            param, param_at = doc.resolve(param, at.child("parameters", name))
        except SpecError:
            continue
        if not isinstance(param, dict) or "x-asyncgen-identity" not in param:
            continue
        value = param["x-asyncgen-identity"]
        if value not in ("username", "clientId"):
            problems.append(
                doc.problem(
                    param_at.child("x-asyncgen-identity"),
                    f"`x-asyncgen-identity` of parameter {name!r} must be 'username' or "
                    f"'clientId', got {value!r}",
                )
            )


def _check_operation_ids(doc: Document, problems: list[Problem]) -> None:
    channels = doc.data.get("channels")
    if not isinstance(channels, dict):
        return
    seen: dict[str, Ref] = {}
    root = Ref(doc.root.path)
    for key, channel in channels.items():
        if not isinstance(channel, dict):
            continue
        for verb in ("publish", "subscribe"):
            operation = channel.get(verb)
            if not isinstance(operation, dict) or not isinstance(operation.get("operationId"), str):
                continue
            at = root.child("channels", key, verb, "operationId")
            operation_id = operation["operationId"]
            if operation_id in seen:
                first = doc.location(seen[operation_id])
                problems.append(
                    doc.problem(
                        at,
                        f"operationId {operation_id!r} is used twice (first at line {first.line})",
                    )
                )
            else:
                seen[operation_id] = at


def _resolved(doc: Document, value: Any, at: Ref) -> tuple[Any, Ref] | None:
    """`value` with its `$ref`s followed, or None when they do not resolve (reported by
    the ref walk)."""
    try:
        return doc.resolve(value, at)
    except SpecError:
        return None


def _mapping(doc: Document, value: Any, at: Ref) -> tuple[dict[str, Any], Ref] | None:
    found = _resolved(doc, value, at)
    if found is None or not isinstance(found[0], dict):
        return None
    return found


def _message_places(doc: Document, messages: Any, at: Ref) -> list[tuple[Ref, Ref]]:
    """(where each message is written, where it is) for a map or list of messages."""
    items = (
        [(key, value) for key, value in messages.items()]
        if isinstance(messages, dict)
        else list(enumerate(messages))
        if isinstance(messages, list)
        else []
    )
    places: list[tuple[Ref, Ref]] = []
    for key, value in items:
        found = _resolved(doc, value, at.child(key))
        if found is not None:
            places.append((at.child(key), found[1]))
    return places


def _section(doc: Document, name: str) -> list[tuple[str, dict[str, Any], Ref]]:
    """(key, object, place) of each mapping in the root's `name` section (`channels`, ...),
    its `$ref`s followed."""
    section = doc.data.get(name)
    if not isinstance(section, dict):
        return []
    root = Ref(doc.root.path)
    result = []
    for key, value in section.items():
        found = _mapping(doc, value, root.child(name, key))
        if found is not None:
            result.append((key, *found))
    return result


def _channel_messages(doc: Document, channel: tuple[dict[str, Any], Ref]) -> set[Ref]:
    return {
        place
        for _, place in _message_places(
            doc, channel[0].get("messages"), channel[1].child("messages")
        )
    }


def _check_operations_v3(doc: Document, problems: list[Problem]) -> None:
    """An operation's messages are its channel's; a reply names a message."""
    for key, operation, at in _section(doc, "operations"):
        channel = _mapping(doc, operation.get("channel"), at.child("channel"))
        if channel is None:
            continue
        if not isinstance(channel[0].get("address"), str):
            message = f"operation {key!r} has a channel without an address; skipped"
            problems.append(Problem(doc.location(at), message, Level.WARNING))
        listed = _channel_messages(doc, channel)
        for written, place in _message_places(doc, operation.get("messages"), at.child("messages")):
            if place not in listed:
                name = place.pointer.rsplit("/", 1)[-1]
                channel_key = channel[1].pointer.rsplit("/", 1)[-1]
                problems.append(
                    doc.problem(
                        written,
                        f"operation {key!r} uses message {unescape_token(name)!r}, which its "
                        f"channel {unescape_token(channel_key)!r} does not list",
                    )
                )
        if operation.get("reply") is not None:
            _check_reply(doc, problems, key, operation["reply"], at.child("reply"))


def _check_reply(doc: Document, problems: list[Problem], key: str, value: Any, at: Ref) -> None:
    found = _mapping(doc, value, at)
    if found is None:
        return
    reply, at = found
    if _message_places(doc, reply.get("messages"), at.child("messages")):
        return
    if "channel" in reply:
        channel = _mapping(doc, reply["channel"], at.child("channel"))
        if channel is None or _channel_messages(doc, channel):
            return
    message = f"the reply of operation {key!r} names no message"
    problems.append(Problem(doc.key_location(at), message))


def _check_operations_v2(doc: Document, problems: list[Problem]) -> None:
    """An operation that names no message is generated with a handler of raw bytes."""
    for key, channel, at in _section(doc, "channels"):
        for verb in ("publish", "subscribe"):
            operation = _mapping(doc, channel.get(verb), at.child(verb))
            if operation is None:
                continue
            traits = operation[0].get("traits")
            has_message = "message" in operation[0] or any(
                isinstance(trait, dict) and "message" in trait
                for trait in (traits if isinstance(traits, list) else [])
            )
            if not has_message:
                name = operation[0].get("operationId") or f"{verb} {key}"
                problems.append(
                    Problem(
                        doc.location(operation[1]),
                        f"operation {name!r} has no message: its handler receives the raw bytes",
                        Level.WARNING,
                    )
                )


def _check_tags(doc: Document, problems: list[Problem]) -> None:
    """No tag name is listed twice in one `tags` list."""
    file = doc.root.path
    stack: list[tuple[Any, str]] = [(doc.data, "")]
    while stack:
        value, pointer = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key in _DATA_KEYS or key in ("payload", "headers", "schema"):
                    continue
                if key == "tags" and isinstance(item, list):
                    _check_tag_list(doc, problems, item, Ref(file, pointer).child(key))
                elif isinstance(item, dict | list):
                    stack.append((item, f"{pointer}/{escape_token(key)}"))
        elif isinstance(value, list):
            stack.extend(
                (item, f"{pointer}/{index}")
                for index, item in enumerate(value)
                if isinstance(item, dict | list)
            )


def _check_tag_list(doc: Document, problems: list[Problem], tags: list[Any], at: Ref) -> None:
    seen: dict[str, Ref] = {}
    for index, tag in enumerate(tags):
        found = _mapping(doc, tag, at.child(index))
        if found is None or not isinstance(found[0].get("name"), str) or tag in tags[:index]:
            continue  # a tag written twice alike is the structure check's duplicate item
        name = found[0]["name"]
        if name in seen:
            first = doc.location(seen[name])
            problems.append(
                doc.problem(
                    at.child(index),
                    f"tag {name!r} is listed twice (first at line {first.line})",
                )
            )
        else:
            seen[name] = at.child(index)


def _channels(doc: Document, version: int) -> list[tuple[str, dict[str, Any], Ref]]:
    """(address, channel, place) of every channel with an address."""
    result = []
    for key, channel, at in _section(doc, "channels"):
        address = key if version == 2 else channel.get("address")
        if isinstance(address, str):
            result.append((address, channel, at))
    return result


def _check_protocol_addresses(
    doc: Document, problems: list[Problem], version: int, protocol: Protocol
) -> None:
    """Each address is a topic or subject the target's client takes: nats-py refuses a
    subject with an empty token, white space or a wildcard inside a token when
    subscribing, paho a topic with `+` or `#` in it, so the service would die there."""
    word = "MQTT topic" if protocol == "mqtt" else "NATS subject"
    for address, _, at in _channels(doc, version):
        problem = address_problem(address, protocol)
        if problem is None:
            continue
        written = subject_address(address, protocol)
        problems.append(
            doc.problem(
                at,
                f"unsupported: address {address!r} maps to the {word} {written!r}, which is "
                f"not valid: {problem}",
            )
        )


def _check_parameter_patterns(doc: Document, problems: list[Problem], version: int) -> None:
    """A channel parameter's `pattern` is a regular expression."""
    for _, channel, at in _channels(doc, version):
        params = _mapping(doc, channel.get("parameters"), at.child("parameters"))
        if params is None:
            continue
        for name, value in params[0].items():
            found = _mapping(doc, value, params[1].child(name))
            if found is None:
                continue
            param, param_at = found
            if version == 2:
                schema = _mapping(doc, param.get("schema"), param_at.child("schema"))
                if schema is None:
                    continue
                param, param_at = schema
            pattern = param.get("pattern")
            if isinstance(pattern, str):
                engine, error = regex_engine(pattern)
                if engine is None:
                    problems.append(
                        doc.problem(
                            param_at.child("pattern"),
                            f"parameter {name!r}: {pattern!r} is not a regular expression "
                            f"({error})",
                        )
                    )


def check_semantics(doc: Document, protocol: Protocol | None = None) -> list[Problem]:
    """Refs resolve, address parameters are declared, operation ids are unique, operations
    use their channel's messages, tag names are unique; with a target `protocol`, each
    address is checked against it."""
    problems: list[Problem] = []
    version = 3 if str(doc.data.get("asyncapi", "")).startswith("3.") else 2
    _walk_refs(doc, problems)
    _check_addresses(doc, problems, version)
    _check_parameter_patterns(doc, problems, version)
    if protocol is not None:
        _check_protocol_addresses(doc, problems, version, protocol)
    if version == 2:
        _check_operation_ids(doc, problems)
        _check_operations_v2(doc, problems)
    else:
        _check_operations_v3(doc, problems)
    _check_tags(doc, problems)
    unique: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        unique.setdefault((str(problem.location), problem.message), problem)
    return list(unique.values())
