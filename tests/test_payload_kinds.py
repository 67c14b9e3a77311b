"""Payloads that are not JSON, and operations without messages: the content type decides
what a handler receives (`str`, `bytes`, a model decoded from MessagePack), and an
operation that names no message receives the bytes as they came."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack  # type: ignore[import-untyped, unused-ignore]
import pytest
from conftest import not_black_formatted
from test_schema_formats import spec_text as formats_spec
from typer.testing import CliRunner

from asyncgen.cli import app
from asyncgen.model.ir import payload_kind

runner = CliRunner()

KINDS = textwrap.dedent(
    """\
    asyncapi: 3.0.0
    info: {title: Kinds, version: 1.0.0}
    channels:
      text:
        address: logs/{source}
        parameters: {source: {}}
        messages:
          line:
            contentType: text/plain; charset=utf-8
            payload: {type: string}
            examples: [{payload: a line}]
      blob:
        address: blobs
        messages:
          blob: {contentType: application/octet-stream, examples: [{payload: raw}]}
      packed:
        address: packed
        messages:
          reading:
            contentType: application/msgpack
            payload:
              type: object
              required: [value]
              properties: {value: {type: number}}
            examples: [{payload: {value: 1.5}}]
      empty:
        address: empty
    operations:
      onText: {action: receive, channel: {$ref: '#/channels/text'}}
      onBlob: {action: receive, channel: {$ref: '#/channels/blob'}}
      onPacked: {action: receive, channel: {$ref: '#/channels/packed'}}
      onEmpty: {action: receive, channel: {$ref: '#/channels/empty'}}
      sendText: {action: send, channel: {$ref: '#/channels/text'}}
      sendPacked: {action: send, channel: {$ref: '#/channels/packed'}}
      sendEmpty: {action: send, channel: {$ref: '#/channels/empty'}}
    """
)


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        (None, "json"),
        ("application/json", "json"),
        ("application/cloudevents+json; charset=utf-8", "json"),
        ("Application/JSON", "json"),
        ("text/plain", "text"),
        ("text/csv", "text"),
        ("application/xml", "text"),
        ("application/octet-stream", "bytes"),
        ("application/x-protobuf", "bytes"),
        ("application/msgpack", "msgpack"),
        ("application/x-msgpack", "msgpack"),
        ("application/vnd.msgpack", "msgpack"),
    ],
)
def test_the_content_type_decides_the_payload_kind(content_type: str | None, kind: str) -> None:
    assert payload_kind(content_type) == kind


def generate_and_import(
    tmp_path: Path, spec_text: str, package: str, *extra: str
) -> Iterator[ModuleType]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    output = tmp_path / "out"
    result = runner.invoke(
        app, ["generate", str(spec), "-o", str(output), "--package-name", package, *extra]
    )
    assert result.exit_code == 0, result.output
    sys.path.insert(0, str(output / "src"))
    try:
        yield importlib.import_module(f"{package}._generated.service")
    finally:
        sys.path.remove(str(output / "src"))
        for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
            del sys.modules[name]


@pytest.fixture(params=["mqtt", "nats"])
def kinds(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModuleType]:
    protocol = request.param
    yield from generate_and_import(tmp_path, KINDS, f"kinds_{protocol}", "--protocol", protocol)


def address(kinds: ModuleType, mqtt_topic: str) -> str:
    """The topic, or the subject it maps to in the NATS project."""
    return mqtt_topic if kinds.__name__.startswith("kinds_mqtt") else mqtt_topic.replace("/", ".")


def received(service_module: ModuleType) -> tuple[Any, list[tuple[str, Any]]]:
    """A service whose handlers record what they receive, and the record."""
    calls: list[tuple[str, Any]] = []

    def recorder(name: str) -> Any:
        async def handle(message: Any, *rest: Any) -> None:
            calls.append((name, message))

        return handle

    handlers = service_module.Handlers(
        on_text=recorder("text"),
        on_blob=recorder("blob"),
        on_packed=recorder("packed"),
        on_empty=recorder("empty"),
    )
    settings = service_module.Settings.model_validate({})
    return service_module.Service(settings, handlers, service_module.MemoryTransport()), calls


def dispatch(service: Any, address: str, payload: bytes) -> Any:
    return asyncio.run(service.dispatch(address, payload))


def test_text_arrives_as_str_and_bytes_as_they_came(kinds: ModuleType) -> None:
    service, calls = received(kinds)
    assert dispatch(service, address(kinds, "logs/app"), "héllo".encode()).status == "handled"
    assert dispatch(service, address(kinds, "blobs"), b"\x00\xff").status == "handled"
    assert dispatch(service, address(kinds, "empty"), b"{not json").status == "handled"
    assert calls == [("text", "héllo"), ("blob", b"\x00\xff"), ("empty", b"{not json")]


def test_text_that_is_not_utf8_is_invalid(kinds: ModuleType) -> None:
    service, calls = received(kinds)
    result = dispatch(service, address(kinds, "logs/app"), b"\xff\xfe")
    assert result.status == "invalid"
    assert calls == []


def test_msgpack_is_decoded_into_the_model_and_checked(kinds: ModuleType) -> None:
    service, calls = received(kinds)
    packed = address(kinds, "packed")
    assert dispatch(service, packed, msgpack.packb({"value": 2.5})).status == "handled"
    assert calls[0][1] == kinds.models.ReadingPayload(value=2.5)
    assert dispatch(service, packed, msgpack.packb({"other": 1})).status == "invalid"
    assert dispatch(service, packed, b'{"value": 1}').status == "invalid"  # JSON is not msgpack
    assert len(calls) == 1


def test_publishers_encode_by_content_type(kinds: ModuleType) -> None:
    service, _ = received(kinds)
    publishers = service.publishers
    asyncio.run(publishers.send_text("héllo", source="app"))
    asyncio.run(publishers.send_packed(kinds.models.ReadingPayload(value=1.0)))
    asyncio.run(publishers.send_empty(b"\x01\x02"))
    payloads = [message.payload for message in service.transport.published]
    assert payloads == ["héllo".encode(), msgpack.packb({"value": 1.0}), b"\x01\x02"]


def test_a_2x_operation_without_message_receives_bytes(tmp_path: Path) -> None:
    spec = textwrap.dedent(
        """\
        asyncapi: 2.6.0
        info: {title: No message, version: 1.0.0}
        channels:
          things:
            publish: {operationId: onThing}
            subscribe: {operationId: sendThing}
        """
    )
    calls: list[Any] = []

    async def handle(message: Any, context: Any) -> None:
        calls.append(message)

    for service_module in generate_and_import(tmp_path, spec, "no_message"):
        settings = service_module.Settings.model_validate({})
        service = service_module.Service(settings, service_module.Handlers(on_thing=handle))
        assert dispatch(service, "things", b"\x00anything").status == "handled"
        assert calls == [b"\x00anything"]
        handler = (tmp_path / "out" / "src" / "no_message" / "handlers" / "on_thing.py").read_text()
        assert "message: bytes," in handler
        assert "import models" not in handler


@pytest.mark.slow
def test_projects_of_every_kind_and_schema_format_lint_type_check_and_pass_their_tests(
    tmp_path: Path,
) -> None:
    """The examples of each kind included: each project's own tests send them."""
    projects: list[tuple[Path, str]] = []
    for name, text, protocol in [
        ("kinds_mqtt", KINDS, "mqtt"),
        ("kinds_nats", KINDS, "nats"),
        ("formats_mqtt", formats_spec(), "mqtt"),
    ]:
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(text)
        output = tmp_path / name
        args = ["generate", str(spec), "-o", str(output), "--package-name", name]
        result = runner.invoke(app, [*args, "--protocol", protocol])
        assert result.exit_code == 0, result.output
        projects.append((output, name))
    for output, name in projects:
        assert not_black_formatted(output, name) == []
    paths = [str(output) for output, _ in projects]
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *paths],
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    env = {**os.environ, "MYPYPATH": os.pathsep.join(f"{path}/src" for path in paths)}
    packages = [arg for _, name in projects for arg in ("-p", name)]
    mypy = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *packages],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    passed = {"kinds_mqtt": 3, "kinds_nats": 3, "formats_mqtt": 1}  # examples; invalid JSON
    for output, name in projects:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(output / "src")},
            cwd=output,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert f"{passed[name]} passed" in run.stdout, run.stdout[-3000:]


def test_an_example_of_a_text_message_that_is_no_string_is_left_out(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        KINDS.replace(
            "examples: [{payload: a line}]", "examples: [{payload: a line}, {payload: {a: 1}}]"
        )
    )
    output = tmp_path / "out"
    result = runner.invoke(app, ["generate", str(spec), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert "example 2 of message 'line' does not match" in result.output
    assert "it is sent as text: it must be a string" in result.output
    tests = (output / "tests" / "test_spec_examples.py").read_text()
    assert 'b"a line"' in tests and "line example 2" not in tests
