"""The service's HTTP listener (HTTP_PORT): health, readiness, metrics, and messages
posted to an operation.

- `GET /healthz`: 200 while the process runs;
- `GET /readyz`: 200 while connected and subscribed, else 503;
- `GET /metrics`: Prometheus text format (see `metrics`);
- `POST /operations/{operationId}`: the body is the payload, the query holds the
  address parameters (or the path goes on with the concrete address:
  `/operations/{operationId}/devices/d-1/telemetry`); the message takes the same
  validation, handler and dead-letter path as one from the broker. 202 when handled,
  200 with the reply for an operation that replies, 400 with the errors when invalid,
  404 for an operation that does not receive, 401 without the bearer token HTTP_TOKEN
  (when set), 413 above HTTP_MAX_BODY, 500 when the handler failed, 503 before startup
  and while stopping.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy. Needs aiohttp and prometheus-client
(the project's `http` extra).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

import pydantic

from .core import ServiceCore, StartupError
from .payloads import encode
from .routing import Route, RouteTable

try:
    from aiohttp import web

    from .metrics import CONTENT_TYPE, Metrics
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise StartupError(
        f"HTTP_PORT is set, but {exc.name} is not installed: install aiohttp and "
        "prometheus-client (the project's `http` extra: pip install -e '.[http]'), "
        "or unset HTTP_PORT"
    ) from exc


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validation_errors(error: pydantic.ValidationError) -> list[dict[str, Any]]:
    """Each complaint with its field (`loc`), message and type, as JSON data."""
    errors: list[dict[str, Any]] = json.loads(
        error.json(include_url=False, include_context=False, include_input=False)
    )
    return errors


def field_errors(route: Route, payload: bytes) -> list[dict[str, Any]]:
    """The schema's complaints about `payload`, each with its field (`loc`), for a
    payload the route refused; empty when the refusal was not a validation error."""
    try:
        route.decode(payload)
    except pydantic.ValidationError as exc:
        return validation_errors(exc)
    except ValueError:
        return []
    return []


class HttpListener:
    """Serves the endpoints above for `service` on HTTP_HOST:HTTP_PORT."""

    def __init__(self, service: ServiceCore[Any, Any]) -> None:
        self.service = service
        settings = service.settings
        self.host: str = settings.http_host
        self.port: int = settings.http_port or 0
        token = settings.http_token
        self._token = (
            None if token is None else f"Bearer {token.get_secret_value()}".encode()
        )
        self.metrics = Metrics(service)
        self._routes = {route.operation: route for route in service.routes}
        self._tables = {
            route.operation: RouteTable([route]) for route in service.routes
        }
        app = web.Application(client_max_size=settings.http_max_body)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_text)
        app.router.add_post("/operations/{operation}", self.post_operation)
        app.router.add_post("/operations/{operation}/{address:.+}", self.post_operation)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=settings.shutdown_grace_period,
        )

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.service.logger.info("HTTP on http://%s:%d", self.host, self.port)
        if self._token is None and not is_loopback(self.host):
            self.service.logger.warning(
                "HTTP_HOST %s is reachable from other hosts and HTTP_TOKEN is unset: "
                "anyone who reaches the port can post messages to the operations",
                self.host,
            )

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        if self.service.connected.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not connected\n")

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE}
        )

    def _authorized(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, self._token)

    def _address(self, route: Route, request: web.Request) -> str | web.Response:
        """The concrete address of a posted message: the path after the operation
        (`/operations/{operationId}/devices/d-1/telemetry`), else the channel's address
        built from the query's parameter values; a 400 answer when it is neither."""
        given = request.match_info.get("address")
        try:
            if given:
                if route.address.parse(given) is None:
                    return _json(
                        400,
                        {
                            "operation": route.operation,
                            "error": f"{given!r} is not on the operation's channel "
                            f"{route.address.template!r}",
                        },
                    )
                return given
            return route.address.build(dict(request.query))
        except pydantic.ValidationError as exc:
            return _json(
                400,
                {
                    "operation": route.operation,
                    "error": "invalid address parameters",
                    "errors": validation_errors(exc),
                },
            )
        except ValueError as exc:
            return _json(400, {"operation": route.operation, "error": str(exc)})

    async def post_operation(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(
                {"error": "a valid bearer token is required"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        operation = request.match_info["operation"]
        route = self._routes.get(operation)
        if route is None:
            return _json(
                404, {"error": f"no operation {operation!r} receives messages"}
            )
        service = self.service
        if not service.accepting():
            return _json(503, {"error": "the service is not running"})
        payload = await request.read()  # 413 above client_max_size
        address = self._address(route, request)
        if isinstance(address, web.Response):
            return address
        # At most MAX_CONCURRENCY posted messages at once (the broker's have their own).
        async with service._slots:
            result = await service._dispatch(
                self._tables[operation],
                address,
                payload,
                transport="http",
                send_reply=False,
            )
        if result.status == "handled":
            if route.reply_adapter is not None:
                return web.Response(
                    body=encode(result.reply), content_type="application/json"
                )
            return _json(202, {"operation": operation, "status": "handled"})
        if result.status == "invalid":
            return _json(
                400,
                {
                    "operation": operation,
                    "error": result.reason,
                    "errors": field_errors(route, payload),
                },
            )
        return _json(500, {"operation": operation, "error": "the handler failed"})
