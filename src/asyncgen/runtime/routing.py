"""Routes: which receive operation takes a message, and which of its messages it is.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic
from pydantic import TypeAdapter

from .addresses import PARSED_CACHE_SIZE, Address
from .payloads import Accepted, PayloadError


class NotAccepted(ValueError):
    """The payload is none of the messages its operation accepts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe(error: Exception) -> str:
    """A short, readable account of why a payload or parameter was refused."""
    if not isinstance(error, pydantic.ValidationError):
        return str(error)
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def rejection(error: Exception) -> str:
    """Why a payload was refused, from the error its decoding raised."""
    if isinstance(error, NotAccepted):
        return error.reason
    if isinstance(error, pydantic.ValidationError):
        return f"payload does not match the schema: {describe(error)}"
    return f"payload refused: {describe(error)}"


@dataclass(frozen=True)
class Route:
    """How the messages of a receive operation are recognised, validated and handled.

    `messages` are the messages the operation accepts, in the document's order.
    Protocol adapters add their own fields (MQTT QoS, NATS queue group, ...).
    """

    operation: str
    address: Address[Any]
    messages: tuple[Accepted, ...]
    handler: Callable[..., Awaitable[Any]]
    with_params: bool
    #: The type of the reply a request/reply operation answers with.
    reply: Any = None
    reply_address: Address[Any] | None = None
    #: The payload's bytes to the message; raises ValueError (see `rejection()`).
    decode: Callable[[bytes], Any] = field(init=False, repr=False, compare=False)
    reply_adapter: TypeAdapter[Any] | None = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "decode", _decoder(self.messages))
        adapter = None if self.reply is None else TypeAdapter(self.reply)
        object.__setattr__(self, "reply_adapter", adapter)


def _decoder(messages: Sequence[Accepted]) -> Callable[[bytes], Any]:
    """One function trying each accepted message; raises ValueError (NotAccepted when
    there are several)."""
    if not messages:
        messages = (Accepted(bytes, "bytes"),)
    decoders = [(accepted, accepted.decoder()) for accepted in messages]
    if len(decoders) == 1:
        # The validator itself, without a wrapper: one call less on every message. It
        # raises ValueError, which `rejection()` explains.
        return decoders[0][1]
    discriminated = any(accepted.match for accepted in messages)

    def decode_any(payload: bytes) -> Any:
        candidates = decoders
        if discriminated:
            data = messages[0].read(payload)
            verdicts = [accepted.matches(data) for accepted, _ in decoders]
            # The messages whose fields say "this one" first, then the undecided.
            candidates = [
                entry
                for entry, verdict in zip(decoders, verdicts, strict=True)
                if verdict
            ] + [
                entry
                for entry, verdict in zip(decoders, verdicts, strict=True)
                if verdict is None
            ]
            if not candidates:
                candidates = decoders
        errors: list[str] = []
        for accepted, decode in candidates:
            try:
                return decode(payload)
            except ValueError as exc:
                errors.append(f"{accepted.name}: {describe(exc)}")
        if len(errors) == 1:
            raise NotAccepted(f"payload does not match the schema: {errors[0]}")
        raise NotAccepted("payload matches none of the messages: " + " | ".join(errors))

    return decode_any


def specificity(route: Route) -> tuple[int, ...]:
    """Sorts routes most specific first: at the first level where two addresses differ
    in kind, a literal level comes before a parameter."""
    return tuple(0 if level is not None else 1 for level in route.address.levels)


@dataclass
class _Level:
    """One address level in `RouteTable`'s tree."""

    literal: dict[str, _Level] = field(default_factory=dict)
    wildcard: _Level | None = None
    #: Routes whose address ends here.
    routes: list[Route] = field(default_factory=list)


class RouteTable:
    """Finds the routes an address can take without trying every route's pattern.

    Routes sit in a tree by address level, a level holding a parameter being a wildcard.
    A lookup follows the address's levels to the few routes that can match, most
    specific first (`devices/all/status` before `devices/{id}/status`), in table order
    among equals. The candidates of busy addresses are remembered.
    """

    def __init__(self, routes: Sequence[Route]) -> None:
        self._root = _Level()
        self._order = {id(route): position for position, route in enumerate(routes)}
        for route in routes:
            node = self._root
            for level in route.address.levels:
                if level is None:
                    node.wildcard = node.wildcard or _Level()
                    node = node.wildcard
                else:
                    node = node.literal.setdefault(level, _Level())
            node.routes.append(route)
        self._separator = routes[0].address.syntax.separator if routes else "/"
        self._candidates: dict[str, tuple[Route, ...]] = {}

    def _rank(self, route: Route) -> tuple[tuple[int, ...], int]:
        return specificity(route), self._order[id(route)]

    def candidates(self, address: str) -> tuple[Route, ...]:
        """The routes whose subscription matches `address`, most specific first."""
        found = self._candidates.get(address)
        if found is not None:
            return found
        nodes = [self._root]
        for level in address.split(self._separator):
            nodes = [
                child
                for node in nodes
                for child in (node.literal.get(level), node.wildcard)
                if child is not None
            ]
            if not nodes:
                break
        found = tuple(
            sorted((route for node in nodes for route in node.routes), key=self._rank)
        )
        if len(self._candidates) < PARSED_CACHE_SIZE:
            self._candidates[address] = found
        return found


__all__ = [
    "Accepted",
    "NotAccepted",
    "PayloadError",
    "Route",
    "RouteTable",
    "describe",
    "rejection",
    "specificity",
]
