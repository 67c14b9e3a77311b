"""Regeneration points at user handlers whose signature no longer fits the spec."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from conftest import EXAMPLES
from typer.testing import CliRunner

from asyncgen.cli import app
from asyncgen.write.signatures import Expected, check_handler

runner = CliRunner()


def test_changed_message_type_is_reported_with_file_and_line(tmp_path: Path) -> None:
    spec = tmp_path / "asyncapi.yaml"
    shutil.copyfile(EXAMPLES / "mqtt" / "asyncapi.yaml", spec)
    project = tmp_path / "project"
    assert runner.invoke(app, ["generate", str(spec), "-o", str(project)]).exit_code == 0

    document = yaml.safe_load(spec.read_text())
    telemetry = document["components"]["messages"]["TelemetryData"]
    telemetry["payload"] = {"$ref": "#/components/schemas/DeviceStatus"}
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    result = runner.invoke(app, ["generate", "-o", str(project)])

    assert result.exit_code == 0, result.output
    handler = project / "src" / "iot_device_management" / "handlers" / "receive_telemetry.py"
    line = next(
        number
        for number, text in enumerate(handler.read_text().splitlines(), start=1)
        if text.startswith("async def handle")
    )
    assert f"{handler}:{line}: handle() takes message: models.TelemetryPayload" in result.output
    assert "the spec now sends models.DeviceStatus" in result.output
    assert "receive_status.py" not in result.output.split("no longer match")[1]


def test_handler_written_as_the_spec_wants_has_no_problem(tmp_path: Path) -> None:
    handler = tmp_path / "receive.py"
    handler.write_text(
        "async def handle(message: models.A | models.B, params: P, context: C) -> None: ...\n"
    )
    expected = Expected("receive", "models.B | models.A", "P", None)
    assert check_handler(handler, expected) == []


def test_missing_params_and_unexpected_reply_are_reported(tmp_path: Path) -> None:
    handler = tmp_path / "receive.py"
    handler.write_text("async def handle(message: A, context: C) -> A:\n    return message\n")
    problems = check_handler(handler, Expected("receive", "models.A", "Params", None))
    assert any("takes 2 arguments" in p for p in problems)
    assert any("has no reply now" in p for p in problems)
    assert all(p.startswith(f"{handler}:1:") for p in problems)
