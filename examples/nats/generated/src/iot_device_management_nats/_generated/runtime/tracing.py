"""Tracing with OpenTelemetry: a consumer span per message, a producer span per publish.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.

Spans follow OpenTelemetry's messaging semantic conventions: `process <address
template>` (kind CONSUMER) around the routing, validation, handler and reply of a
message, and `publish <address template>` (kind PRODUCER) around each publish,
replies and dead letters included. The trace context (W3C `traceparent` and
`tracestate`, through the global propagator) travels in NATS headers and MQTT 5 user
properties, so one trace runs from a device through the service to what it publishes:
a message that carries a context is processed in a child span of it (and links to it),
and the handler runs in that span, so its publishes are children of it. MQTT 3.1.1 has
no user properties: there each message starts a trace of its own.

This module is imported only when `opentelemetry-api` is installed and `TRACING` is not
`off` (see `ServiceCore.start_tracing`); without it the service neither imports
OpenTelemetry nor pays for tracing. Spans are made once an SDK is configured
(`opentelemetry-sdk`, or `opentelemetry-instrument`), at startup or later; until then
the service looks for one once a second and passes no trace context on: with the API
alone, extracting and injecting the context would cost more than the rest of the
service's work on a message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from .addresses import PARSED_CACHE_SIZE, Address
from .routing import Route, RouteTable

# Attribute names of the messaging semantic conventions.
MESSAGING_SYSTEM = "messaging.system"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
DESTINATION_NAME = "messaging.destination.name"
DESTINATION_TEMPLATE = "messaging.destination.template"
BODY_SIZE = "messaging.message.body.size"
CLIENT_ID = "messaging.client.id"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
#: The AsyncAPI operation a message was handled by, or published for.
ASYNCAPI_OPERATION = "asyncapi.operation.id"

#: `error.type` of a message that failed validation (a handler's failure is its
#: exception's class name).
INVALID_MESSAGE = "invalid_message"

#: Where the trace context travels, the W3C Trace Context header names.
TRACEPARENT = "traceparent"


class _Destination:
    """What the spans of a publish to one address say about where it went."""

    __slots__ = ("name", "operation", "template")

    def __init__(self, operation: str | None, template: str | None) -> None:
        self.operation = operation
        self.template = template
        self.name = f"publish {template}" if template else "publish"


class Processing:
    """The consumer span of one message, and the operation it was named after."""

    __slots__ = ("operation", "span")

    def __init__(self, span: Span, operation: str | None) -> None:
        self.span = span
        self.operation = operation


class Tracing:
    """Makes a service's spans and carries its trace context in and out of messages.

    `system` is `messaging.system` ("mqtt", "nats"). `destinations` are the addresses
    the service publishes to, each with the operation id that publishes there: a
    publish's span is named by the template of the most specific one its address
    matches, or by `dead_letter_address`. `carries_context` says whether messages can
    carry the trace context (not over MQTT 3.1.1). `attributes` go on every span (the
    server, the client id). Spans go to `tracer_provider`, by default the global one.
    """

    def __init__(
        self,
        system: str,
        routes: Sequence[Route],
        destinations: Sequence[tuple[str, Address[Any]]] = (),
        dead_letter_address: str | None = None,
        *,
        carries_context: bool = True,
        attributes: Mapping[str, AttributeValue] | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.carries_context = carries_context
        package = __name__.rpartition(".")[0]
        self.tracer = trace.get_tracer(package, tracer_provider=tracer_provider)
        self._provider = tracer_provider
        self._recording = False
        self._next_look = 0.0
        common: dict[str, AttributeValue] = {MESSAGING_SYSTEM: system}
        common.update(attributes or {})
        self._process_attributes = {
            **common,
            OPERATION_NAME: "process",
            OPERATION_TYPE: "process",
        }
        self._publish_attributes = {
            **common,
            OPERATION_NAME: "publish",
            OPERATION_TYPE: "send",
        }
        self._templates = {route.operation: route.address.template for route in routes}
        self._destinations = sorted(
            destinations, key=lambda entry: specificity_of(entry[1])
        )
        self._known: dict[str, _Destination] = {}
        #: MQTT dead letters go below the dead-letter topic (operation, reason code,
        #: original topic): their spans are named by the dead-letter topic itself.
        self._dead_letters: tuple[str, _Destination] | None = None
        if dead_letter_address:
            dead_letters = _Destination(None, dead_letter_address)
            self._known[dead_letter_address] = dead_letters
            self._dead_letters = (f"{dead_letter_address}/", dead_letters)

    @property
    def recording(self) -> bool:
        """Whether an SDK records spans (its tracer provider is set): until then no
        span is made and no context carried (see the module's documentation).

        Looked for at most once a second: the look costs more than the service's own
        work on a message.
        """
        if self._recording:
            return True
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + 1.0
            provider = self._provider or trace.get_tracer_provider()
            self._recording = not isinstance(provider, _WITHOUT_SDK)
        return self._recording

    # -- consuming ---------------------------------------------------------------------

    @contextmanager
    def processing(
        self,
        table: RouteTable,
        address: str,
        payload: bytes,
        headers: Mapping[str, str] | None,
    ) -> Iterator[Processing]:
        """A consumer span around the handling of one message, current inside.

        The message's trace context, when it carries one, is the span's parent (and
        its link); else the span is a child of the current span (an HTTP request's,
        say), if any.
        """
        parent = propagate.extract(headers) if headers else None
        creation = trace.get_current_span(parent).get_span_context()
        if parent is not None and not creation.is_valid:
            parent = None
        links = None if parent is None else [Link(creation)]
        candidates = table.candidates(address)
        attributes = dict(self._process_attributes)
        attributes[DESTINATION_NAME] = address
        attributes[BODY_SIZE] = len(payload)
        name = "process"
        likeliest = None
        if candidates:
            # Named before routing, for samplers: by the route that takes the message
            # unless overlapping operations have another one take it.
            likeliest = candidates[0].operation
            name = f"process {candidates[0].address.template}"
            attributes[DESTINATION_TEMPLATE] = candidates[0].address.template
            attributes[ASYNCAPI_OPERATION] = likeliest
        span = self.tracer.start_span(
            name, parent, SpanKind.CONSUMER, attributes, links
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            yield Processing(span, likeliest)
        finally:
            otel_context.detach(token)
            span.end()

    def processed(
        self,
        processing: Processing,
        operation: str | None,
        status: str,
        reason: str | None,
    ) -> None:
        """Record what became of the message (`DispatchResult`'s fields) on its span."""
        span = processing.span
        if operation != processing.operation and operation in self._templates:
            template = self._templates[operation]
            span.update_name(f"process {template}")
            span.set_attribute(DESTINATION_TEMPLATE, template)
            span.set_attribute(ASYNCAPI_OPERATION, operation)
        if status == "invalid":
            span.set_attribute(ERROR_TYPE, INVALID_MESSAGE)
            span.set_status(Status(StatusCode.ERROR, reason))
        elif status == "failed":
            span.set_status(Status(StatusCode.ERROR, reason))

    @staticmethod
    def failed(error: BaseException) -> None:
        """A handler raised `error`: record it on the current (consumer) span."""
        span = trace.get_current_span()
        if span.is_recording():
            span.record_exception(error)
            span.set_attribute(ERROR_TYPE, error_type(error))

    # -- producing ---------------------------------------------------------------------

    @contextmanager
    def publishing(
        self, address: str, payload: bytes, headers: dict[str, str] | None
    ) -> Iterator[dict[str, str] | None]:
        """A producer span around one publish; yields the headers to publish with.

        The span's context goes into the headers, unless they carry a trace context of
        their own already (the caller's, left unchanged) or messages cannot carry one.
        """
        destination = self._destination(address)
        attributes = dict(self._publish_attributes)
        attributes[DESTINATION_NAME] = address
        attributes[BODY_SIZE] = len(payload)
        if destination.template is not None:
            attributes[DESTINATION_TEMPLATE] = destination.template
        if destination.operation is not None:
            attributes[ASYNCAPI_OPERATION] = destination.operation
        span = self.tracer.start_span(
            destination.name, None, SpanKind.PRODUCER, attributes
        )
        if self.carries_context and (headers is None or TRACEPARENT not in headers):
            headers = dict(headers) if headers else {}
            propagate.inject(headers, trace.set_span_in_context(span))
        try:
            yield headers
        except BaseException as exc:
            if span.is_recording():
                span.record_exception(exc)
                span.set_attribute(ERROR_TYPE, error_type(exc))
                span.set_status(Status(StatusCode.ERROR, f"{exc}"))
            raise
        finally:
            span.end()

    def _destination(self, address: str) -> _Destination:
        known = self._known.get(address)
        if known is not None:
            return known
        destination = _Destination(None, None)
        if self._dead_letters and address.startswith(self._dead_letters[0]):
            destination = self._dead_letters[1]
        else:
            for operation, candidate in self._destinations:
                if candidate.matches(address):
                    destination = _Destination(operation, candidate.template)
                    break
        if len(self._known) < PARSED_CACHE_SIZE:
            self._known[address] = destination
        return destination


_WITHOUT_SDK = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def specificity_of(address: Address[Any]) -> tuple[int, ...]:
    """Sorts addresses most specific first, as `routing.specificity` sorts routes."""
    return tuple(0 if level is not None else 1 for level in address.levels)


def error_type(error: BaseException) -> str:
    """`error.type` of an exception: its class name, with its module unless builtin."""
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


__all__ = ["Processing", "Tracing", "error_type", "specificity_of"]
