"""Dead letters: the original bytes of a message the service could not take, unchanged,
with why and where from as metadata beside them.

The metadata travels as NATS headers and MQTT 5 user properties (`DeadLetter.metadata`);
on MQTT the dead letter's topic also carries the operation, the reason code and the
original topic as levels below the dead-letter topic (`mqtt_topic`), which is all that
MQTT 3.1.1 can carry. A dead letter's payload is exactly the original's, so it fits
wherever the original did, but for the metadata: `nats_size` and `mqtt_packet_size` say
what the broker will count against its limit.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote, unquote

#: Why a message was dead-lettered, in one stable word: `invalid` (its payload or its
#: address parameters failed validation) or `failed` (its handler raised or timed out).
ReasonCode = Literal["invalid", "failed"]
REASON_CODES: tuple[ReasonCode, ...] = ("invalid", "failed")

HEADER_PREFIX = "Dead-Letter-"
OPERATION = "Dead-Letter-Operation"
REASON_CODE = "Dead-Letter-Reason-Code"
REASON = "Dead-Letter-Reason"
ADDRESS = "Dead-Letter-Address"
TIME = "Dead-Letter-Time"
ATTEMPT = "Dead-Letter-Attempt"

#: The reason in the metadata is cut to this many characters: a validation message can
#: quote a whole payload. The log line has it in full.
MAX_REASON = 500

#: MQTT's largest packet (its remaining length is at most 268,435,455 bytes).
MQTT_MAX_PACKET = 268_435_455 + 5
_MAX_TOPIC = 65_535


class TooLarge(Exception):
    """A dead letter is larger than the broker takes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes with its metadata, over the limit of {limit}")
        self.size = size
        self.limit = limit


def _header_value(text: str) -> str:
    # NATS headers end at a line break; MQTT properties are UTF-8 without NUL.
    return " ".join(text.replace("\x00", " ").split())


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter: the original message and why it was refused."""

    operation: str
    code: ReasonCode
    reason: str
    #: The topic or subject the original arrived on, where a replay sends it back.
    address: str
    payload: bytes
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: The delivery attempt that gave up (1 unless the message was delivered again).
    attempt: int = 1
    #: The original's own headers (NATS) or user properties (MQTT 5).
    headers: Mapping[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        """The dead letter's headers: the original's own, then the `Dead-Letter-*`
        ones."""
        headers = {
            key: value
            for key, value in self.headers.items()
            if not key.startswith(HEADER_PREFIX)
        }
        headers[OPERATION] = _header_value(self.operation)
        headers[REASON_CODE] = self.code
        headers[REASON] = _header_value(self.reason)[:MAX_REASON]
        headers[ADDRESS] = self.address
        headers[TIME] = self.time.isoformat()
        headers[ATTEMPT] = str(self.attempt)
        return headers

    def original_headers(self) -> dict[str, str] | None:
        """What a replay sends the original with: its own headers, if it had any."""
        original = {
            key: value
            for key, value in self.headers.items()
            if not key.startswith(HEADER_PREFIX)
        }
        return original or None

    @classmethod
    def from_metadata(cls, payload: bytes, metadata: Mapping[str, str]) -> DeadLetter:
        """The dead letter back from its payload and headers; ValueError when they are
        not a dead letter's."""
        try:
            operation = metadata[OPERATION]
            address = metadata[ADDRESS]
        except KeyError as exc:
            raise ValueError(f"not a dead letter: no {exc.args[0]} header") from None
        return cls(
            operation=operation,
            code=reason_code(metadata.get(REASON_CODE, "")),
            reason=metadata.get(REASON, ""),
            address=address,
            payload=payload,
            time=_parse_time(metadata.get(TIME)),
            attempt=_parse_attempt(metadata.get(ATTEMPT)),
            headers=dict(metadata),
        )


def reason_code(text: str) -> ReasonCode:
    """`text` as a reason code; anything unknown counts as `failed`."""
    return text if text in REASON_CODES else "failed"


def _parse_time(text: str | None) -> datetime:
    if text:
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return datetime.now(UTC)


def _parse_attempt(text: str | None) -> int:
    try:
        return max(1, int(text or "1"))
    except ValueError:
        return 1


# -- MQTT ------------------------------------------------------------------------------


def is_dead_letter_topic(base: str, topic: str) -> bool:
    """Whether `topic` is the dead-letter topic `base` or one below it."""
    return topic == base or topic.startswith(base + "/")


def mqtt_topic(base: str, letter: DeadLetter) -> str:
    """`<base>/<operation>/<reason code>/<original topic>`: the operation is
    percent-encoded, so that its `/`, `+` or `#` cannot split or widen the topic."""
    return f"{base}/{quote(letter.operation, safe='')}/{letter.code}/{letter.address}"


def parse_mqtt_topic(base: str, topic: str) -> tuple[str, ReasonCode, str] | None:
    """The operation, reason code and original topic that `mqtt_topic` put in `topic`;
    None when it is not such a topic."""
    if not topic.startswith(base + "/"):
        return None
    parts = topic[len(base) + 1 :].split("/", 2)
    if len(parts) != 3 or parts[1] not in REASON_CODES:
        return None
    operation, code, address = parts
    return unquote(operation), reason_code(code), address


def from_mqtt(
    base: str, topic: str, payload: bytes, properties: Mapping[str, str] | None
) -> DeadLetter | None:
    """The dead letter received on `topic`, from its MQTT 5 user properties when it has
    them, else from the topic's levels (MQTT 3.1.1); None when it is not one."""
    if properties and OPERATION in properties and ADDRESS in properties:
        return DeadLetter.from_metadata(payload, properties)
    parsed = parse_mqtt_topic(base, topic)
    if parsed is None:
        return None
    operation, code, address = parsed
    return DeadLetter(
        operation, code, f"{code} (see the service's log)", address, payload
    )


def mqtt_packet_size(
    topic: str, payload: bytes, properties: Mapping[str, str] | None, qos: int = 1
) -> int:
    """The size of the PUBLISH packet (an upper bound), as a broker's packet limit
    counts it."""
    size = 5 + 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    if properties is not None:
        size += 4 + sum(
            5 + len(key.encode()) + len(value.encode())
            for key, value in properties.items()
        )
    return size


def check_mqtt_size(topic: str, size: int, limit: int) -> None:
    """Raise `TooLarge` when a PUBLISH of `size` bytes exceeds `limit`, or its topic
    MQTT's 65,535 bytes."""
    if size > limit:
        raise TooLarge(size, limit)
    if len(topic.encode()) > _MAX_TOPIC:
        raise TooLarge(len(topic.encode()), _MAX_TOPIC)


# -- NATS ------------------------------------------------------------------------------


def nats_size(payload: bytes, headers: Mapping[str, str] | None) -> int:
    """The bytes nats-server counts against `max_payload`: headers and payload."""
    size = len(payload)
    if headers:
        size += len(b"NATS/1.0\r\n\r\n") + sum(
            len(key.encode()) + len(value.encode()) + 4
            for key, value in headers.items()
        )
    return size
