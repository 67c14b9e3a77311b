"""Regeneration points at user handlers whose signature no longer fits the spec."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES
from typer.testing import CliRunner

from asyncgen.cli import app
from asyncgen.write import manifest, signatures
from asyncgen.write.signatures import Expected, check_handler, fitting_digest

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

    # The generated code is written, and the run fails until the handler fits again.
    assert result.exit_code == 1, result.output
    assert "generated MQTT project" in result.output
    handler = project / "src" / "iot_device_management" / "handlers" / "receive_telemetry.py"
    line = next(
        number
        for number, text in enumerate(handler.read_text().splitlines(), start=1)
        if text.startswith("async def handle")
    )
    assert f"{handler}:{line}: handle() takes message: models.TelemetryPayload" in result.output
    assert "the spec now sends models.DeviceStatus" in result.output
    reported = [line for line in result.output.splitlines() if ": handle()" in line]
    assert reported and not any("receive_status.py" in line for line in reported)

    # Said again on every run, though the generated code is up to date, and by --check.
    for args in (["generate", "-o", str(project)], ["generate", "--check", "-o", str(project)]):
        again = runner.invoke(app, args)
        assert again.exit_code == 1, again.output
        assert "up to date" in again.output
        assert f"{handler}:{line}: handle() takes message" in again.output
    allowed = runner.invoke(app, ["generate", "--allow-stale-handlers", "-o", str(project)])
    assert allowed.exit_code == 0, allowed.output
    assert f"{handler}:{line}:" in allowed.output

    # Fixed by hand: the next --check passes.
    handler.write_text(handler.read_text().replace("TelemetryPayload", "DeviceStatus"))
    fixed = runner.invoke(app, ["generate", "--check", "-o", str(project)])
    assert fixed.exit_code == 0, fixed.output


def test_a_deleted_handler_module_fails_the_check_and_comes_back(tmp_path: Path) -> None:
    project = tmp_path / "project"
    spec = EXAMPLES / "mqtt" / "asyncapi.yaml"
    assert runner.invoke(app, ["generate", str(spec), "-o", str(project)]).exit_code == 0
    handler = project / "src" / "iot_device_management" / "handlers" / "receive_status.py"
    handler.unlink()
    checked = runner.invoke(app, ["generate", "--check", "-o", str(project)])
    assert checked.exit_code == 1, checked.output
    assert f"{handler}:1: missing" in checked.output
    assert not handler.exists()
    assert runner.invoke(app, ["generate", "-o", str(project)]).exit_code == 0
    assert handler.is_file()


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


def _generated_example(tmp_path: Path) -> tuple[Path, Path]:
    spec = tmp_path / "asyncapi.yaml"
    shutil.copyfile(EXAMPLES / "mqtt" / "asyncapi.yaml", spec)
    project = tmp_path / "project"
    assert runner.invoke(app, ["generate", str(spec), "-o", str(project)]).exit_code == 0
    return spec, project / "src" / "iot_device_management" / "handlers"


def test_every_stub_fits_the_signature_the_manifest_records(tmp_path: Path) -> None:
    # The stubs are not parsed when written (they fit by construction): check that here.
    _, handlers = _generated_example(tmp_path)
    recorded = manifest.recorded_handlers(handlers.parents[2])
    fitting = manifest.fitting_handlers(handlers.parents[2])
    assert recorded and set(fitting) == {expected.module for expected in recorded}
    for expected in recorded:
        path = handlers / f"{expected.module}.py"
        assert check_handler(path, expected) == []
        assert fitting[expected.module] == fitting_digest(path.read_bytes(), expected)


def test_only_handlers_changed_since_they_last_fitted_are_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, handlers = _generated_example(tmp_path)
    project = handlers.parents[2]
    parsed: list[str] = []

    def counting(path: Path, expected: Expected, source: bytes | None = None) -> list[str]:
        parsed.append(path.name)
        return check_handler(path, expected, source)

    monkeypatch.setattr(signatures, "check_handler", counting)
    check = ["generate", "--check", "-o", str(project)]
    assert runner.invoke(app, check).exit_code == 0
    assert parsed == []

    # Edited but still fitting: parsed on every run (the fast path writes nothing).
    telemetry = handlers / "receive_telemetry.py"
    telemetry.write_text(telemetry.read_text() + "\n# edited\n")
    for _ in range(2):
        assert runner.invoke(app, check).exit_code == 0
    assert parsed == ["receive_telemetry.py"] * 2

    # No longer fitting: reported, though its old hash is in the manifest.
    telemetry.write_text(telemetry.read_text().replace("TelemetryPayload", "DeviceStatus"))
    result = runner.invoke(app, check)
    assert result.exit_code == 1
    assert "handle() takes message: models.DeviceStatus" in result.output
