"""Several receive operations on one address, and several messages per operation, in
generated services: the most specific route wins, every accepted message is tried, and
generation warns when two operations' messages overlap. Uses Slack's RTM and Gemini's
market-data documents (../shared/specs) generated for MQTT, with their send operations
turned into receive operations, as a service consuming those streams would see them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SHARED_SPECS, generate, ruff_and_mypy_problems

SPECS = SHARED_SPECS / "3.0.0"

DISPATCH = """
import asyncio, json, sys
from {package}._generated.service import MemoryTransport, Service
from {package}._generated.settings import Settings

service = Service(Settings.model_validate({{}}), transport=MemoryTransport())
outcomes = []
for address, payload in json.loads(sys.argv[1]):
    result = asyncio.run(service.dispatch(address, json.dumps(payload).encode()))
    outcomes.append([result.status, result.operation, result.reason])
print(json.dumps(outcomes))
"""


def consumer_of(spec: Path, folder: Path) -> Path:
    """The document with every send operation made a receive operation."""
    document = yaml.safe_load(spec.read_text())
    for operation in document["operations"].values():
        operation["action"] = "receive"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / spec.name
    copy.write_text(yaml.safe_dump(document, sort_keys=False))
    return copy


def generated(spec: Path, output: Path, package: str) -> str:
    result = generate(spec, output, "--protocol", "mqtt", "--package-name", package)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout + result.stderr


def dispatch(output: Path, package: str, messages: list[tuple[str, Any]]) -> list[list[Any]]:
    result = subprocess.run(
        [sys.executable, "-c", DISPATCH.format(package=package), json.dumps(messages)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(output / "src")},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def slack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any]]:
    spec = SPECS / "slack-rtm-asyncapi.yml"
    if not spec.is_file():
        pytest.skip(f"{spec} is not available")
    folder = tmp_path_factory.mktemp("slack")
    output = folder / "out"
    log = generated(consumer_of(spec, folder), output, "slack_rtm")
    return output, log, yaml.safe_load(spec.read_text())


def slack_types(document: dict[str, Any]) -> dict[str, str]:
    """Each message of `sendMessages` by the `type` value its schema fixes."""
    messages = document["components"]["messages"]
    types: dict[str, str] = {}
    for reference in document["operations"]["sendMessages"]["messages"]:
        name = reference["$ref"].rsplit("/", 1)[-1]
        fixed = messages[name]["payload"].get("properties", {}).get("type", {})
        for value in fixed.get("enum", []):
            types.setdefault(value, name)
    return types


def test_every_message_of_an_operation_on_a_shared_address_reaches_its_handler(
    slack: tuple[Path, str, dict[str, Any]],
) -> None:
    output, _, document = slack
    types = slack_types(document)
    assert len(types) > 30
    payloads = [("/", {"type": value}) for value in types if value != "message"]
    outcomes = dispatch(output, "slack_rtm", payloads)
    assert [status for status, _, _ in outcomes] == ["handled"] * len(payloads)
    assert {operation for _, operation, _ in outcomes} == {"sendMessages"}


def test_a_message_only_the_first_operation_accepts_goes_to_it(
    slack: tuple[Path, str, dict[str, Any]],
) -> None:
    output, _, _ = slack
    outgoing = {"type": "message", "id": 1, "channel": "C1", "text": "hi"}
    [outcome] = dispatch(output, "slack_rtm", [("/", outgoing)])
    assert outcome[:2] == ["handled", "receiveOutgoingMessage"]


def test_a_payload_no_message_accepts_is_invalid_not_unrouted(
    slack: tuple[Path, str, dict[str, Any]],
) -> None:
    output, _, _ = slack
    [outcome] = dispatch(output, "slack_rtm", [("/", {"type": 7})])
    assert outcome[0] == "invalid"
    assert outcome[1] == "receiveOutgoingMessage"


def test_the_project_with_discriminated_messages_passes_ruff_and_mypy(
    slack: tuple[Path, str, dict[str, Any]],
) -> None:
    output, _, _ = slack
    service = (output / "src/slack_rtm/_generated/service.py").read_text()
    assert 'Accepted(models.HelloPayload, match={"type": ["hello"]})' in service
    assert ruff_and_mypy_problems(output, "slack_rtm") == ""


def test_generation_warns_when_two_operations_on_an_address_accept_the_same_message(
    slack: tuple[Path, str, dict[str, Any]],
) -> None:
    _, log, _ = slack
    assert "'receiveOutgoingMessage' and 'sendMessages' both receive on '/'" in log
    assert "outgoingMessage ~ message" in log


def test_gemini_s_examples_are_handled_by_the_operation_of_their_address(
    tmp_path: Path,
) -> None:
    spec = SPECS / "websocket-gemini-asyncapi.yml"
    if not spec.is_file():
        pytest.skip(f"{spec} is not available")
    output = tmp_path / "out"
    log = generated(consumer_of(spec, tmp_path), output, "gemini")
    assert "overlap" not in log
    document = yaml.safe_load(spec.read_text())
    examples = document["components"]["messages"]["marketData"]["examples"]
    payloads = [("/v1/marketdata/btcusd", example["payload"]) for example in examples]
    outcomes = dispatch(output, "gemini", payloads)
    assert [outcome[:2] for outcome in outcomes] == [["handled", "sendMarketData"]] * 2
    [unknown_symbol] = dispatch(
        output, "gemini", [("/v1/marketdata/nosuch", examples[0]["payload"])]
    )
    assert unknown_symbol[0] == "invalid"
    assert "invalid topic parameters" in unknown_symbol[2]


SHADOWING = {
    "asyncapi": "3.0.0",
    "info": {"title": "Screens", "version": "1.0.0"},
    "channels": {
        "anyShow": {
            "address": "screens/{type}/show",
            "parameters": {"type": {}},
            "messages": {"show": {"$ref": "#/components/messages/show"}},
        },
        "imageShow": {
            "address": "screens/image/show",
            "messages": {"show": {"$ref": "#/components/messages/show"}},
        },
    },
    "operations": {
        name: {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/show"}],
        }
        for name, channel in (("showAny", "anyShow"), ("showImage", "imageShow"))
    },
    "components": {
        "messages": {
            "show": {"payload": {"type": "object", "properties": {"url": {"type": "string"}}}}
        }
    },
}


def test_a_literal_address_declared_after_a_parameter_is_not_shadowed(tmp_path: Path) -> None:
    spec = tmp_path / "asyncapi.yaml"
    spec.write_text(yaml.safe_dump(SHADOWING, sort_keys=False))
    output = tmp_path / "out"
    generated(spec, output, "screens")
    outcomes = dispatch(
        output,
        "screens",
        [("screens/image/show", {"url": "a"}), ("screens/video/show", {"url": "b"})],
    )
    assert [outcome[:2] for outcome in outcomes] == [
        ["handled", "showImage"],
        ["handled", "showAny"],
    ]
