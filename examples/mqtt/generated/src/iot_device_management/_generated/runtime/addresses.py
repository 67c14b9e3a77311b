"""Address templates: `devices/{deviceId}/telemetry` to a subscription, and back.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

P = TypeVar("P", bound=BaseModel)

_PARAMETER = re.compile(r"\{([^{}]+)\}")
#: Addresses whose parsed parameters each channel keeps.
PARSED_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Syntax:
    """How a protocol writes addresses and subscriptions."""

    separator: str
    #: The wildcard of one level in a subscription.
    wildcard: str
    #: Characters a parameter value may not hold: they would change the address's
    #: meaning.
    forbidden: frozenset[str]


MQTT_TOPIC = Syntax("/", "+", frozenset("/+#\x00"))
NATS_SUBJECT = Syntax(".", "*", frozenset(".*> \t\r\n\x00"))


class NoParams(BaseModel):
    """The parameters of a channel whose address has none."""

    model_config = ConfigDict(frozen=True)


class Address(Generic[P]):
    """An address template such as `devices/{deviceId}/telemetry`.

    `subscription` is what to subscribe to, `parse()` turns a concrete address back
    into validated parameters and `format()` builds one from parameters.
    """

    def __init__(self, template: str, params: type[P], syntax: Syntax) -> None:
        self.template = template
        self.params = params
        self.syntax = syntax
        self.names = tuple(_PARAMETER.findall(template))
        separator = syntax.separator
        self.levels = tuple(
            None if _PARAMETER.search(level) else level
            for level in template.split(separator)
        )
        self.subscription = separator.join(
            syntax.wildcard if level is None else level for level in self.levels
        )
        pattern = ""
        position = 0
        for match in _PARAMETER.finditer(template):
            pattern += re.escape(template[position : match.start()])
            pattern += f"([^{re.escape(separator)}]+)"
            position = match.end()
        pattern += re.escape(template[position:])
        self._pattern = re.compile(pattern)
        # Parameter models are frozen: the parameters of a busy address can be reused.
        self._parsed: dict[str, P] = {}

    def matches(self, address: str) -> bool:
        """Whether `address` is on this channel, its parameter values unchecked."""
        return self._pattern.fullmatch(address) is not None

    def parse(self, address: str) -> P | None:
        """The parameters in `address`, or None when it is not on this channel.

        Raises pydantic.ValidationError when the address matches but a value is invalid.
        """
        parsed = self._parsed.get(address)
        if parsed is not None:
            return parsed
        match = self._pattern.fullmatch(address)
        if match is None:
            return None
        values = dict(zip(self.names, match.groups(), strict=True))
        parsed = self.params.model_validate(values)
        if len(self._parsed) < PARSED_CACHE_SIZE:
            self._parsed[address] = parsed
        return parsed

    def format(self, params: P) -> str:
        """The concrete address for `params`; refuses values that change its meaning."""
        values = params.model_dump(by_alias=True)
        forbidden = self.syntax.forbidden
        for name in self.names:
            value = str(values[name])
            if not value or forbidden.intersection(value):
                shown = "".join(sorted(forbidden)).strip()
                raise ValueError(
                    f"parameter {name!r} of {self.template!r} must be non-empty and "
                    f"free of {shown!r}: got {value!r}"
                )
        return _PARAMETER.sub(lambda match: str(values[match.group(1)]), self.template)

    def build(self, values: dict[str, str]) -> str:
        """The concrete address for parameter values keyed by their spec names."""
        return self.format(self.params.model_validate(values))
