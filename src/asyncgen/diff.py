"""What changed between two versions of an AsyncAPI document, and whom it breaks.

Every message flow has a sending side and a receiving side: the service receives what
its receive operations name and the clients (devices, other services) send it, and the
other way round for send operations; a reply flows back. During a rollout the two sides
run different versions, so a change is judged by which side must move first:

- a change that *narrows* what a receiver accepts (a new required field, a removed enum
  value, a tightened constraint, a narrowed type) breaks the senders: messages they still
  send in the old form are refused;
- a change that *widens* what a sender may send (a new message, an added enum value, a
  loosened constraint, a removed field) breaks the receivers: they get messages they do
  not know, or lose a field they read;
- a change of address, of a pattern, of a type into another breaks both.

`compare(old, new)` returns the changes; `render_text` and `render_json` print them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from asyncgen.model.ir import Api, Message, Operation

Side = Literal["senders", "receivers"]
Party = Literal["service", "clients"]

NARROWED: frozenset[Side] = frozenset({"senders"})
WIDENED: frozenset[Side] = frozenset({"receivers"})
BOTH: frozenset[Side] = frozenset({"senders", "receivers"})
NONE: frozenset[Side] = frozenset()


@dataclass(frozen=True)
class Change:
    """One difference. `breaks` names the sides of the flow that must change first."""

    subject: str
    what: str
    breaks: frozenset[Side]
    #: Who sends the flow the change is on: the service or its clients.
    sender: Party = "clients"
    where: str = ""

    @property
    def breaking_for(self) -> list[Party]:
        receiver: Party = "service" if self.sender == "clients" else "clients"
        parties: list[Party] = []
        if "senders" in self.breaks:
            parties.append(self.sender)
        if "receivers" in self.breaks:
            parties.append(receiver)
        return sorted(set(parties))

    @property
    def breaking(self) -> bool:
        return bool(self.breaks)


@dataclass
class _Schemas:
    """A schema and the definitions its `#/$defs/<name>` refs point to."""

    defs: dict[str, Any]

    def resolve(self, schema: Any) -> Any:
        for _ in range(64):
            if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
                return schema
            name = schema["$ref"].rsplit("/", 1)[-1]
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            target = self.defs.get(name)
            schema = {**target, **rest} if isinstance(target, dict) and rest else target
        return schema


# -- JSON Schema ----------------------------------------------------------------------------

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


def _types(schema: dict[str, Any]) -> set[str] | None:
    value = schema.get("type")
    if value is None:
        return None
    types = {value} if isinstance(value, str) else {t for t in value if isinstance(t, str)}
    if "number" in types:
        types.add("integer")
    return types


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def schema_changes(
    old: Any, new: Any, old_defs: dict[str, Any], new_defs: dict[str, Any], path: str = ""
) -> Iterator[tuple[str, str, frozenset[Side]]]:
    """(where, what, breaks) for each difference between two JSON Schemas, as a receiver
    validating with `new` sees messages made for `old` and the other way round."""
    yield from _schema_changes(_Schemas(old_defs), _Schemas(new_defs), old, new, path, set())


def _schema_changes(
    olds: _Schemas,
    news: _Schemas,
    old: Any,
    new: Any,
    path: str,
    seen: set[tuple[int, int]],
) -> Iterator[tuple[str, str, frozenset[Side]]]:
    old, new = olds.resolve(old), news.resolve(new)
    key = (id(old), id(new))
    # Equal text is not enough: a `$ref` inside may name definitions that changed.
    if key in seen or (old == new and "$ref" not in json.dumps(old, default=str)):
        return
    seen = seen | {key}
    where = path or "/"
    if old is True or old is None or old == {}:
        if new is not True and new is not None and new != {}:
            yield where, "a schema now constrains what was free", NARROWED
        return
    if new is True or new is None or new == {}:
        yield where, "the schema no longer constrains anything", WIDENED
        return
    if not isinstance(old, dict) or not isinstance(new, dict):
        yield where, "the schema changed", BOTH
        return

    old_types, new_types = _types(old), _types(new)
    if old_types != new_types:
        shown = f"type {_show(old.get('type'))} -> {_show(new.get('type'))}"
        if old_types is None:
            yield where, f"{shown}: narrowed", NARROWED
        elif new_types is None or new_types > old_types:
            yield where, f"{shown}: widened", WIDENED
        elif new_types < old_types:
            yield where, f"{shown}: narrowed", NARROWED
        else:
            yield where, f"{shown}: changed", BOTH

    yield from _enum_changes(old, new, where)
    yield from _bound_changes(old, new, where)
    for word in ("pattern", "format", "multipleOf"):
        if old.get(word) != new.get(word):
            before, after = old.get(word), new.get(word)
            if before is None:
                yield where, f"{word} {_show(after)} added", NARROWED
            elif after is None:
                yield where, f"{word} {_show(before)} removed", WIDENED
            else:
                yield where, f"{word} {_show(before)} -> {_show(after)}", BOTH
    yield from _object_changes(olds, news, old, new, path, seen)
    if "items" in old or "items" in new:
        yield from _schema_changes(
            olds, news, old.get("items", True), new.get("items", True), f"{path}/items", seen
        )
    for word in ("oneOf", "anyOf", "allOf"):
        before, after = old.get(word), new.get(word)
        if before == after:
            continue
        if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
            for index, (a, b) in enumerate(zip(before, after, strict=True)):
                yield from _schema_changes(olds, news, a, b, f"{path}/{word}/{index}", seen)
        elif isinstance(before, list) and isinstance(after, list) and word != "allOf":
            if len(after) > len(before):
                yield where, f"{word} has {len(after) - len(before)} more choice(s)", WIDENED
            else:
                yield where, f"{word} has {len(before) - len(after)} fewer choice(s)", NARROWED
        else:
            yield where, f"{word} changed", BOTH


def _enum_changes(
    old: dict[str, Any], new: dict[str, Any], where: str
) -> Iterator[tuple[str, str, frozenset[Side]]]:
    for word in ("enum", "const"):
        if word not in old and word not in new:
            continue
        before = _values(old, word)
        after = _values(new, word)
        if before is None:
            yield where, f"{word} {_show(new[word])} added", NARROWED
            continue
        if after is None:
            yield where, f"{word} removed", WIDENED
            continue
        removed = [v for v in before if v not in after]
        added = [v for v in after if v not in before]
        if removed:
            yield where, f"{word} value(s) {_show(removed)} removed", NARROWED
        if added:
            yield where, f"{word} value(s) {_show(added)} added", WIDENED


def _values(schema: dict[str, Any], word: str) -> list[Any] | None:
    if word not in schema:
        return None
    value = schema[word]
    if word == "const":
        return [value]
    return list(value) if isinstance(value, list) else [value]


def _bound_changes(
    old: dict[str, Any], new: dict[str, Any], where: str
) -> Iterator[tuple[str, str, frozenset[Side]]]:
    for words, tighter in ((_LOWER_BOUNDS, 1.0), (_UPPER_BOUNDS, -1.0)):
        for word in words:
            before, after = _number(old.get(word)), _number(new.get(word))
            if before == after:
                continue
            shown = f"{word} {_show(old.get(word))} -> {_show(new.get(word))}"
            if before is None:
                yield where, f"{word} {_show(new.get(word))} added", NARROWED
            elif after is None:
                yield where, f"{word} {_show(old.get(word))} removed", WIDENED
            elif (after - before) * tighter > 0:
                yield where, f"{shown}: tightened", NARROWED
            else:
                yield where, f"{shown}: loosened", WIDENED


def _object_changes(
    olds: _Schemas,
    news: _Schemas,
    old: dict[str, Any],
    new: dict[str, Any],
    path: str,
    seen: set[tuple[int, int]],
) -> Iterator[tuple[str, str, frozenset[Side]]]:
    where = path or "/"
    old_required = set(old.get("required") or [])
    new_required = set(new.get("required") or [])
    for name in sorted(new_required - old_required):
        yield f"{path}/properties/{name}", f"field {name!r} is now required", NARROWED
    for name in sorted(old_required - new_required):
        yield f"{path}/properties/{name}", f"field {name!r} is no longer required", WIDENED
    old_props: dict[str, Any] = _mapping(old.get("properties"))
    new_props: dict[str, Any] = _mapping(new.get("properties"))
    old_extra = old.get("additionalProperties", True)
    new_extra = new.get("additionalProperties", True)
    for name in old_props:
        at = f"{path}/properties/{name}"
        if name not in new_props:
            yield at, f"field {name!r} removed", WIDENED if new_extra is not False else BOTH
        else:
            yield from _schema_changes(olds, news, old_props[name], new_props[name], at, seen)
    for name in new_props:
        if name not in old_props and name not in new_required:
            at = f"{path}/properties/{name}"
            if old_extra is False:
                yield at, f"optional field {name!r} added where no other was allowed", WIDENED
            else:
                yield at, f"optional field {name!r} added", NONE
    if old_extra != new_extra:
        if new_extra is False:
            yield where, "additionalProperties: fields not listed are now refused", NARROWED
        elif old_extra is False:
            yield where, "additionalProperties: fields not listed are now allowed", WIDENED
        else:
            yield from _schema_changes(
                olds, news, old_extra, new_extra, f"{path}/additionalProperties", seen
            )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the document ---------------------------------------------------------------------------


def _message_id(message: Message) -> str:
    return message.name or message.key


def _sender(operation: Operation) -> Party:
    return "clients" if operation.action == "receive" else "service"


def _other(party: Party) -> Party:
    return "service" if party == "clients" else "clients"


def compare(old: Api, new: Api) -> list[Change]:
    """Every difference between two versions of a document that matters on the wire."""
    changes: list[Change] = []
    old_ops = {op.key: op for op in old.operations}
    new_ops = {op.key: op for op in new.operations}
    renamed: dict[str, str] = {}
    for key, op in old_ops.items():
        if key in new_ops:
            continue
        twin = next(
            (
                other
                for other_key, other in new_ops.items()
                if other_key not in old_ops
                and other_key not in renamed.values()
                and other.action == op.action
                and other.channel.address == op.channel.address
            ),
            None,
        )
        if twin is not None:
            renamed[key] = twin.key
            changes.append(
                Change(
                    f"operation {key}",
                    f"renamed to {twin.key!r}: the same on the wire; the service's handler "
                    "module takes the new name",
                    NONE,
                    _sender(op),
                )
            )
            continue
        # Without its receiver, senders publish into the void; without its sender,
        # receivers wait for nothing.
        changes.append(
            Change(
                f"operation {key}",
                f"removed ({op.action}s on {op.channel.address!r})",
                NARROWED if op.action == "receive" else WIDENED,
                _sender(op),
            )
        )
    for key, op in new_ops.items():
        if key not in old_ops and key not in renamed.values():
            changes.append(
                Change(
                    f"operation {key}",
                    f"added ({op.action}s on {op.channel.address!r})",
                    NONE,
                    _sender(op),
                )
            )
    for key, op in old_ops.items():
        twin_key = renamed.get(key, key)
        if twin_key in new_ops:
            changes += _operation_changes(op, new_ops[twin_key], old, new)
    changes += _channel_renames(old, new)
    return changes


def _channel_renames(old: Api, new: Api) -> list[Change]:
    by_address = {channel.address: channel.key for channel in new.channels}
    changes = []
    for channel in old.channels:
        if channel.key in {c.key for c in new.channels}:
            continue
        twin = by_address.get(channel.address)
        if twin is not None:
            changes.append(
                Change(
                    f"channel {channel.key}",
                    f"renamed to {twin!r}: the same address, nothing changes on the wire",
                    NONE,
                )
            )
    return changes


def _operation_changes(old_op: Operation, new_op: Operation, old: Api, new: Api) -> list[Change]:
    subject = f"operation {new_op.key}"
    sender = _sender(new_op)
    changes: list[Change] = []

    def add(what: str, breaks: frozenset[Side], where: str = "", flow: Party = sender) -> None:
        changes.append(Change(subject, what, breaks, flow, where))

    if old_op.action != new_op.action:
        add(f"action {old_op.action} -> {new_op.action}", BOTH)
        return changes
    if old_op.channel.address != new_op.channel.address:
        add(f"address {old_op.channel.address!r} -> {new_op.channel.address!r}", BOTH)
    _parameter_changes(old_op, new_op, add)
    _binding_changes(old_op, new_op, add)
    _message_changes(old_op.messages, new_op.messages, old, new, add, sender, "")
    old_reply, new_reply = old_op.reply, new_op.reply
    replier = _other(sender)
    if old_reply is not None and new_reply is None:
        add("reply removed: requesters wait for an answer that never comes", WIDENED, "", replier)
    elif old_reply is None and new_reply is not None:
        add("reply added: requesters that do not wait for it are unaffected", NONE, "", replier)
    elif old_reply is not None and new_reply is not None:
        _message_changes(old_reply.messages, new_reply.messages, old, new, add, replier, "reply ")
        old_at = old_reply.channel.address if old_reply.channel else old_reply.address_location
        new_at = new_reply.channel.address if new_reply.channel else new_reply.address_location
        if old_at != new_at:
            add(f"reply address {old_at!r} -> {new_at!r}", BOTH, "", replier)
    return changes


def _parameter_changes(old_op: Operation, new_op: Operation, add: Any) -> None:
    old_params = {p.name: p for p in old_op.channel.parameters}
    for param in new_op.channel.parameters:
        before = old_params.get(param.name)
        if before is None:
            continue
        where = f"parameter {param.name}"
        old_enum, new_enum = before.enum, param.enum
        if old_enum != new_enum:
            if old_enum is None:
                add(f"values limited to {_show(new_enum)}", NARROWED, where)
            elif new_enum is None:
                add("values no longer limited", WIDENED, where)
            else:
                if removed := [v for v in old_enum if v not in new_enum]:
                    add(f"value(s) {_show(removed)} removed", NARROWED, where)
                if added := [v for v in new_enum if v not in old_enum]:
                    add(f"value(s) {_show(added)} added", WIDENED, where)
        if before.pattern != param.pattern:
            add(f"pattern {_show(before.pattern)} -> {_show(param.pattern)}", BOTH, where)


def _binding_changes(old_op: Operation, new_op: Operation, add: Any) -> None:
    old_qos, new_qos = old_op.binding("mqtt", "qos", 0), new_op.binding("mqtt", "qos", 0)
    if old_qos != new_qos:
        if isinstance(old_qos, int) and isinstance(new_qos, int) and new_qos > old_qos:
            add(f"MQTT QoS {old_qos} -> {new_qos}: raised", NONE, "bindings")
        else:
            # Receivers relied on the stronger delivery guarantee.
            add(f"MQTT QoS {old_qos} -> {new_qos}: lowered", WIDENED, "bindings")
    old_retain = old_op.binding("mqtt", "retain", False)
    new_retain = new_op.binding("mqtt", "retain", False)
    if old_retain != new_retain:
        add(f"MQTT retain {old_retain} -> {new_retain}", WIDENED, "bindings")
    old_queue, new_queue = old_op.binding("nats", "queue"), new_op.binding("nats", "queue")
    if old_queue != new_queue:
        # Replicas in the old and the new group each get every message during a rollout.
        add(f"NATS queue group {old_queue!r} -> {new_queue!r}", WIDENED, "bindings")
    old_js, new_js = old_op.extensions.get("x-jetstream"), new_op.extensions.get("x-jetstream")
    if old_js != new_js:
        add(f"x-jetstream {_show(old_js)} -> {_show(new_js)}", WIDENED, "bindings")


def _message_changes(
    old_messages: list[Message],
    new_messages: list[Message],
    old: Api,
    new: Api,
    add: Any,
    sender: Party,
    prefix: str,
) -> None:
    olds = {_message_id(m): m for m in old_messages}
    news = {_message_id(m): m for m in new_messages}
    for name in olds:
        if name not in news:
            add(f"{prefix}message {name!r} removed", NARROWED, "", sender)
    for name in news:
        if name not in olds:
            add(f"{prefix}message {name!r} added", WIDENED, "", sender)
    for name, before in olds.items():
        after = news.get(name)
        if after is None:
            continue
        if before.content_type != after.content_type:
            add(
                f"{prefix}message {name!r}: content type {before.content_type!r} -> "
                f"{after.content_type!r}",
                BOTH,
                "",
                sender,
            )
        for part in ("payload", "headers"):
            old_name, new_name = getattr(before, part), getattr(after, part)
            for where, what, breaks in schema_changes(
                {"$ref": f"#/$defs/{old_name}"} if old_name else True,
                {"$ref": f"#/$defs/{new_name}"} if new_name else True,
                old.schemas,
                new.schemas,
            ):
                add(f"{prefix}message {name!r} {part}: {what}", breaks, where, sender)


# -- output ---------------------------------------------------------------------------------


def render_text(changes: list[Change], old_name: str, new_name: str) -> str:
    if not changes:
        return f"no changes on the wire between {old_name} and {new_name}\n"
    lines = [f"{old_name} -> {new_name}"]
    for change in sorted(changes, key=lambda c: (not c.breaking, c.subject)):
        if change.breaking:
            label = "BREAKING for " + " and ".join(
                "the service" if p == "service" else "its clients" for p in change.breaking_for
            )
        else:
            label = "compatible"
        where = f" at {change.where}" if change.where else ""
        lines.append(f"  {change.subject}{where}: {change.what} [{label}]")
    breaking = sum(1 for change in changes if change.breaking)
    lines.append(f"{len(changes)} change(s), {breaking} breaking")
    return "\n".join(lines) + "\n"


def render_json(changes: list[Change]) -> str:
    return (
        json.dumps(
            {
                "breaking": any(change.breaking for change in changes),
                "changes": [
                    {
                        "subject": change.subject,
                        "where": change.where,
                        "what": change.what,
                        "sender": change.sender,
                        "breaks": sorted(change.breaks),
                        "breaking_for": change.breaking_for,
                    }
                    for change in changes
                ],
            },
            indent=2,
        )
        + "\n"
    )
