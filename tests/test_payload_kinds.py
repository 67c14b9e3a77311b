"""Messages whose content type is text, bytes or MessagePack: the generated routes carry
the payload kind, handlers get `str`, `bytes` or the model, and the project type-checks,
lints and depends on msgpack only when it uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
import yaml
from conftest import generate, ruff_and_mypy_problems

from asyncgen.render.context import payload_kind


def document(content_types: dict[str, str]) -> dict[str, object]:
    messages = {
        name: {
            "contentType": content_type,
            "payload": (
                {"type": "string"}
                if content_type.startswith("text/")
                else {"type": "object", "properties": {"value": {"type": "number"}}}
            ),
        }
        for name, content_type in content_types.items()
    }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Kinds", "version": "1.0.0"},
        "channels": {
            name: {
                "address": f"kinds/{name}",
                "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            }
            for name in content_types
        },
        "operations": {
            f"receive_{name}": {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{name}"},
                "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
            }
            for name in content_types
        },
        "components": {"messages": messages},
    }


DISPATCH = """
import asyncio, json, sys
from kinds._generated.service import MemoryTransport, Service
from kinds._generated.settings import Settings
from kinds._generated.handlers import Handlers

seen = {}
def recorder(name):
    async def handle(message, context):
        seen[name] = [type(message).__name__, repr(message)]
    return handle

names = ["receive_note", "receive_blob", "receive_packed"]
service = Service(
    Settings.model_validate({}),
    handlers=Handlers(*(recorder(name) for name in names)),
    transport=MemoryTransport(),
)
for address, hex_payload in json.loads(sys.argv[1]):
    result = asyncio.run(service.dispatch(address, bytes.fromhex(hex_payload)))
    assert result.status == "handled", result
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kinds")
    spec = folder / "asyncapi.yaml"
    content_types = {
        "note": "text/plain; charset=utf-8",
        "blob": "application/octet-stream",
        "packed": "application/msgpack",
    }
    spec.write_text(yaml.safe_dump(document(content_types), sort_keys=False))
    output = folder / "out"
    result = generate(spec, output, "--protocol", "mqtt", "--package-name", "kinds")
    assert result.returncode == 0, result.stderr
    return output


def test_the_content_type_decides_the_payload_kind() -> None:
    assert payload_kind("text/plain; charset=utf-8") == "text"
    assert payload_kind("application/octet-stream") == "bytes"
    assert payload_kind("application/x-msgpack") == "msgpack"
    assert payload_kind("application/json") == "json"
    assert payload_kind(None) == "json"
    assert payload_kind("application/cloudevents+json") == "json"


def test_the_routes_carry_the_payload_kind_and_handlers_get_str_bytes_or_models(
    project: Path,
) -> None:
    service = (project / "src/kinds/_generated/service.py").read_text()
    assert 'Accepted(str, "text")' in service
    assert 'Accepted(bytes, "bytes")' in service
    assert 'Accepted(models.PackedPayload, "msgpack")' in service
    payloads = [
        ("kinds/note", "grüße".encode().hex()),
        ("kinds/blob", b"\x00\xff".hex()),
        ("kinds/packed", msgpack.packb({"value": 2.5}).hex()),
    ]
    result = subprocess.run(
        [sys.executable, "-c", DISPATCH, json.dumps(payloads)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(project / "src")},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "receive_note": ["str", "'grüße'"],
        "receive_blob": ["bytes", "b'\\x00\\xff'"],
        "receive_packed": ["PackedPayload", "PackedPayload(value=2.5)"],
    }


def test_msgpack_becomes_a_dependency_only_when_a_message_uses_it(project: Path) -> None:
    assert '"msgpack>=1,<2"' in (project / "pyproject.toml").read_text()
    examples = Path(__file__).resolve().parents[1] / "examples"
    assert "msgpack" not in (examples / "mqtt/generated/pyproject.toml").read_text()


def test_the_project_passes_ruff_and_mypy(project: Path) -> None:
    assert ruff_and_mypy_problems(project, "kinds") == ""
