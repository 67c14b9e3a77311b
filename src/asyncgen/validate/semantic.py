"""Rules AsyncAPI states in prose that its JSON Schema cannot check."""

from __future__ import annotations

from typing import Any

from asyncgen.errors import Level, Problem, SpecError
from asyncgen.load import Document, Ref
from asyncgen.model.ir import address_parameters

# Keywords whose values are literal data: a `$ref` key in there is not a reference.
_DATA_KEYS = {"enum", "const", "default", "examples", "example"}


def _walk_refs(doc: Document, problems: list[Problem]) -> None:
    """Every `$ref` reachable from the root resolves (across files, cycle-safe)."""
    seen: set[Ref] = set()
    stack: list[tuple[Any, Ref]] = [(doc.data, Ref(doc.root.path))]
    while stack:
        value, at = stack.pop()
        if isinstance(value, dict):
            if isinstance(value.get("$ref"), str):
                try:
                    target, target_at = doc.resolve(value, at)
                except SpecError as exc:
                    problems.extend(exc.problems)
                    continue
                if target_at not in seen:
                    seen.add(target_at)
                    stack.append((target, target_at))
                continue
            for key, item in value.items():
                if key not in _DATA_KEYS:
                    stack.append((item, at.child(key)))
        elif isinstance(value, list):
            stack.extend((item, at.child(index)) for index, item in enumerate(value))


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


def check_semantics(doc: Document) -> list[Problem]:
    """Refs resolve, address parameters are declared, operation ids are unique."""
    problems: list[Problem] = []
    version = 3 if str(doc.data.get("asyncapi", "")).startswith("3.") else 2
    _walk_refs(doc, problems)
    _check_addresses(doc, problems, version)
    if version == 2:
        _check_operation_ids(doc, problems)
    unique: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        unique.setdefault((str(problem.location), problem.message), problem)
    return list(unique.values())
