"""`asyncgen diff`: every kind of change, classified from the sending and receiving side."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from asyncgen.cli import app

BASE: dict[str, Any] = {
    "asyncapi": "3.0.0",
    "info": {"title": "Plant", "version": "1.0.0"},
    "channels": {
        "readings": {
            "address": "plants/{plantId}/readings",
            "parameters": {"plantId": {"enum": ["north", "south"]}},
            "messages": {"reading": {"$ref": "#/components/messages/Reading"}},
        },
        "commands": {
            "address": "plants/{plantId}/commands",
            "parameters": {"plantId": {}},
            "messages": {"command": {"$ref": "#/components/messages/Command"}},
        },
        "queries": {
            "address": "plants/queries",
            "messages": {"query": {"$ref": "#/components/messages/Query"}},
        },
        "answers": {
            "address": "plants/answers",
            "messages": {"answer": {"$ref": "#/components/messages/Answer"}},
        },
    },
    "operations": {
        "receiveReading": {
            "action": "receive",
            "channel": {"$ref": "#/channels/readings"},
            "bindings": {"mqtt": {"qos": 1}, "nats": {"queue": "plant"}},
        },
        "sendCommand": {"action": "send", "channel": {"$ref": "#/channels/commands"}},
        "answerQuery": {
            "action": "receive",
            "channel": {"$ref": "#/channels/queries"},
            "reply": {"channel": {"$ref": "#/channels/answers"}},
        },
    },
    "components": {
        "messages": {
            "Reading": {"name": "Reading", "payload": {"$ref": "#/components/schemas/Reading"}},
            "Command": {"name": "Command", "payload": {"$ref": "#/components/schemas/Command"}},
            "Query": {"name": "Query", "payload": {"type": "object"}},
            "Answer": {
                "name": "Answer",
                "payload": {
                    "type": "object",
                    "required": ["count"],
                    "properties": {"count": {"type": "integer", "minimum": 0}},
                },
            },
        },
        "schemas": {
            "Reading": {
                "type": "object",
                "required": ["value"],
                "properties": {
                    "value": {"type": "number", "maximum": 100},
                    "unit": {"type": "string", "enum": ["C", "F"]},
                    "note": {"type": "string", "maxLength": 40},
                },
            },
            "Command": {
                "type": "object",
                "additionalProperties": False,
                "required": ["action"],
                "properties": {"action": {"$ref": "#/components/schemas/Action"}},
            },
            "Action": {"type": "string", "enum": ["start", "stop"]},
        },
    },
}

Edit = Callable[[dict[str, Any]], None]


def at(document: dict[str, Any], *path: str) -> Any:
    for key in path:
        document = document[key]
    return document


def setting(*path: str, value: Any) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        at(document, *path[:-1])[path[-1]] = value

    return edit


def removing(*path: str) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        del at(document, *path[:-1])[path[-1]]

    return edit


READING = ("components", "schemas", "Reading")
COMMAND = ("components", "schemas", "Command")

# (name, edit, expected words in the change, whom it breaks: "service", "clients")
CASES: list[tuple[str, Edit, str, set[str]]] = [
    # receiveReading: clients send, the service receives.
    ("new required field", setting(*READING, "required", value=["value", "unit"]),
     "'unit' is now required", {"clients"}),
    ("required field made optional", setting(*READING, "required", value=[]),
     "'value' is no longer required", {"service"}),
    ("field removed", removing(*READING, "properties", "note"), "'note' removed", {"service"}),
    ("optional field added", setting(*READING, "properties", "site", value={"type": "string"}),
     "optional field 'site' added", set()),
    ("type narrowed", setting(*READING, "properties", "value", "type", value="integer"),
     "narrowed", {"clients"}),
    ("type widened", setting(*READING, "properties", "unit", "type", value=["string", "null"]),
     "widened", {"service"}),
    ("type changed", setting(*READING, "properties", "note", "type", value="number"),
     "changed", {"clients", "service"}),
    ("enum narrowed", setting(*READING, "properties", "unit", "enum", value=["C"]),
     '["F"] removed', {"clients"}),
    ("enum widened", setting(*READING, "properties", "unit", "enum", value=["C", "F", "K"]),
     '["K"] added', {"service"}),
    ("constraint tightened", setting(*READING, "properties", "value", "maximum", value=50),
     "tightened", {"clients"}),
    ("constraint loosened", setting(*READING, "properties", "note", "maxLength", value=80),
     "loosened", {"service"}),
    ("additionalProperties closed", setting(*READING, "additionalProperties", value=False),
     "now refused", {"clients"}),
    ("pattern added", setting(*READING, "properties", "note", "pattern", value="^[a-z]+$"),
     "pattern", {"clients"}),
    ("parameter values narrowed",
     setting("channels", "readings", "parameters", "plantId", "enum", value=["north"]),
     "value(s) [\"south\"] removed", {"clients"}),
    ("address changed", setting("channels", "readings", "address", value="sites/{plantId}/r"),
     "address", {"clients", "service"}),
    ("QoS lowered", setting("operations", "receiveReading", "bindings", "mqtt", "qos", value=0),
     "QoS 1 -> 0: lowered", {"service"}),
    ("QoS raised", setting("operations", "receiveReading", "bindings", "mqtt", "qos", value=2),
     "raised", set()),
    ("queue group changed",
     setting("operations", "receiveReading", "bindings", "nats", "queue", value="plant-v2"),
     "queue group", {"service"}),
    ("receive operation removed", removing("operations", "receiveReading"),
     "removed", {"clients"}),
    ("receive operation renamed", lambda d: d["operations"].update(
        {"takeReading": d["operations"].pop("receiveReading")}), "renamed to 'takeReading'",
     set()),
    ("message added", lambda d: d["channels"]["readings"]["messages"].update(
        {"command": {"$ref": "#/components/messages/Command"}}),
     "message 'Command' added", {"service"}),
    # sendCommand: the service sends, clients receive; the same edits break the other side.
    ("send: enum widened (through a $ref)",
     setting("components", "schemas", "Action", "enum", value=["start", "stop", "reset"]),
     '["reset"] added', {"clients"}),
    ("send: optional field where none was allowed",
     setting(*COMMAND, "properties", "at", value={"type": "string"}),
     "optional field 'at' added where no other was allowed", {"clients"}),
    ("send: operation removed", removing("operations", "sendCommand"), "removed", {"clients"}),
    ("send: operation added", setting("operations", "sendAlarm", value={
        "action": "send", "channel": {"$ref": "#/channels/queries"}}), "added", set()),
    # answerQuery: clients ask, the service answers.
    ("reply widened for requesters",
     setting("components", "messages", "Answer", "payload", "properties", "count", "minimum",
             value=-5),
     "reply message 'Answer' payload", {"clients"}),
    ("reply field required",
     setting("components", "messages", "Answer", "payload", "required", value=["count", "x"]),
     "'x' is now required", {"service"}),
    ("reply removed", removing("operations", "answerQuery", "reply"), "reply removed",
     {"clients"}),
]  # fmt: skip


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run_diff(*args: str, cwd: Path | None = None) -> Outcome:
    """`asyncgen diff ARGS` in this process (in `cwd`, for `git:` arguments)."""
    previous = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, ["diff", *args])
    finally:
        os.chdir(previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("name", "edit", "words", "breaking_for"), CASES, ids=[c[0] for c in CASES]
)
def test_each_change_is_classified_for_each_side(
    tmp_path: Path, name: str, edit: Edit, words: str, breaking_for: set[str]
) -> None:
    new = copy.deepcopy(BASE)
    edit(new)
    old_path, new_path = write(tmp_path / "old.yaml", BASE), write(tmp_path / "new.yaml", new)
    result = run_diff(str(old_path), str(new_path), "--format", "json")
    assert result.returncode == (1 if breaking_for else 0), result.stdout + result.stderr
    report = json.loads(result.stdout)
    matching = [c for c in report["changes"] if words in c["what"]]
    assert matching, report
    assert set(matching[0]["breaking_for"]) == breaking_for, matching[0]
    assert report["breaking"] == bool(breaking_for)


def test_identical_documents_differ_in_nothing(tmp_path: Path) -> None:
    old_path = write(tmp_path / "old.yaml", BASE)
    result = run_diff(str(old_path), str(old_path))
    assert result.returncode == 0
    assert result.stdout.startswith("no changes on the wire")


def test_text_output_names_the_side_it_breaks(tmp_path: Path) -> None:
    new = copy.deepcopy(BASE)
    new["components"]["schemas"]["Reading"]["required"] = ["value", "unit"]
    result = run_diff(str(write(tmp_path / "a.yaml", BASE)), str(write(tmp_path / "b.yaml", new)))
    assert result.returncode == 1
    assert (
        "operation receiveReading at /properties/unit: message 'Reading' payload: field 'unit' "
        "is now required [BREAKING for its clients]"
    ) in result.stdout
    assert result.stdout.rstrip().endswith("1 change(s), 1 breaking")


def test_a_schema_in_another_file_is_compared_through_its_ref(tmp_path: Path) -> None:
    for version, maximum in (("old", 100), ("new", 10)):
        folder = tmp_path / version
        (folder / "schemas").mkdir(parents=True)
        document = copy.deepcopy(BASE)
        document["components"]["schemas"]["Reading"] = {"$ref": "schemas/reading.yaml"}
        write(folder / "asyncapi.yaml", document)
        reading = copy.deepcopy(BASE["components"]["schemas"]["Reading"])
        reading["properties"]["value"]["maximum"] = maximum
        write(folder / "schemas" / "reading.yaml", reading)
    result = run_diff(
        str(tmp_path / "old" / "asyncapi.yaml"), str(tmp_path / "new" / "asyncapi.yaml")
    )
    assert result.returncode == 1
    assert "maximum 100 -> 10: tightened [BREAKING for its clients]" in result.stdout


def test_a_git_revision_is_compared_with_the_working_tree(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    (tmp_path / "specs").mkdir()
    write(tmp_path / "specs" / "asyncapi.yaml", BASE)
    git("add", ".")
    git("commit", "-qm", "v1")
    new = copy.deepcopy(BASE)
    new["components"]["schemas"]["Action"]["enum"] = ["start"]
    write(tmp_path / "specs" / "asyncapi.yaml", new)
    result = run_diff("git:HEAD:asyncapi.yaml", "asyncapi.yaml", cwd=tmp_path / "specs")
    assert result.returncode == 1, result.stderr
    assert '["stop"] removed [BREAKING for the service]' in result.stdout
    unchanged = run_diff("git:HEAD:asyncapi.yaml", "git:HEAD:asyncapi.yaml", cwd=tmp_path / "specs")
    assert unchanged.returncode == 0, unchanged.stderr
    missing = run_diff("git:v9:asyncapi.yaml", "asyncapi.yaml", cwd=tmp_path / "specs")
    assert missing.returncode == 2
    assert "'v9' is no revision" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_an_invalid_version_is_reported_with_its_location(tmp_path: Path) -> None:
    broken = copy.deepcopy(BASE)
    broken["operations"]["sendCommand"]["action"] = "shout"
    result = run_diff(
        str(write(tmp_path / "a.yaml", BASE)), str(write(tmp_path / "b.yaml", broken))
    )
    assert result.returncode == 2
    assert "b.yaml:" in result.stderr and "/operations/sendCommand/action" in result.stderr
    assert "Traceback" not in result.stderr
