"""The `asyncgen` command as a user meets it: exit codes, messages, nothing written on error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLES
from typer.testing import CliRunner

from asyncgen import __version__
from asyncgen.cli import app

runner = CliRunner()

BROKEN = textwrap.dedent(
    """\
    asyncapi: 3.0.0
    info:
      version: 1.0.0
    channels:
      telemetry:
        address: devices/{deviceId}/telemetry
    operations:
      receiveTelemetry:
        action: publish
        channel:
          $ref: '#/channels/telemetry'
    """
)

KAFKA_ONLY = textwrap.dedent(
    """\
    asyncapi: 3.0.0
    info: {title: Kafka thing, version: 1.0.0}
    servers:
      prod: {host: 'kafka:9092', protocol: kafka}
    channels:
      events: {address: events, messages: {e: {payload: {type: object}}}}
    operations:
      receiveEvents:
        action: receive
        channel: {$ref: '#/channels/events'}
    """
)


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"asyncgen {__version__}"


def test_help_does_not_import_the_heavy_libraries() -> None:
    code = (
        "import sys, asyncgen.cli; "
        "heavy = [m for m in ('datamodel_code_generator', 'black', 'jinja2', 'jsonschema') "
        "if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]"


def test_an_up_to_date_project_is_answered_without_the_heavy_libraries(tmp_path: Path) -> None:
    # The answer CI gets on every change: from the manifest, with no templates, no
    # models and no option parsing through pydantic (typer 0.29 converts every option
    # with it, a fifth of a second per command).
    spec, out = EXAMPLES / "mqtt" / "asyncapi.yaml", tmp_path / "svc"
    assert runner.invoke(app, ["generate", str(spec), "-o", str(out)]).exit_code == 0
    code = textwrap.dedent(
        f"""
        import sys
        from asyncgen.cli import app
        try:
            app(["generate", {str(spec)!r}, "-o", {str(out)!r}])
        except SystemExit as exc:
            print(exc.code)
        heavy = ("pydantic", "jinja2", "datamodel_code_generator", "black", "isort", "jsonschema")
        print([m for m in heavy if m in sys.modules])
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.splitlines()[-2:] == ["0", "[]"], result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_validate_accepts_the_example() -> None:
    result = runner.invoke(app, ["validate", str(EXAMPLES / "mqtt" / "asyncapi.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_reports_every_error_with_file_line_and_pointer(tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(BROKEN)
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 1
    assert f"{spec}:2:1 #/info: error:" in result.output or f"{spec}:3:3 #/info" in result.output
    assert "`title` is required" in result.output
    assert "#/operations/receiveTelemetry/action" in result.output
    assert "'publish'" in result.output
    assert "Traceback" not in result.output


def test_generate_writes_nothing_for_an_invalid_spec(tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(BROKEN)
    output = tmp_path / "out"
    result = runner.invoke(app, ["generate", str(spec), "-o", str(output)])
    assert result.exit_code == 1
    assert "nothing written" in result.output
    assert not output.exists()


def params_spec(tmp_path: Path, channel: str) -> Path:
    """A 3.0 document whose one channel, `telemetry`, is `channel` (then what follows it)."""
    spec = tmp_path / "params.yaml"
    head = "asyncapi: 3.0.0\ninfo: {title: T, version: 1.0.0}\nchannels:\n  telemetry:\n"
    spec.write_text(head + channel)
    return spec


def test_undeclared_address_parameter_is_reported(tmp_path: Path) -> None:
    spec = params_spec(tmp_path, "    address: devices/{deviceId}/telemetry\n    parameters: {}\n")
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 1
    assert f"{spec}:5:5 #/channels/telemetry: error:" in result.output
    assert "{deviceId}" in result.output


def test_address_parameters_of_a_channel_without_parameters_are_strings(tmp_path: Path) -> None:
    spec = params_spec(
        tmp_path,
        "    address: devices/{deviceId}/{sensor}/telemetry\n"
        "    messages: {reading: {payload: {type: object}}}\n"
        "operations:\n"
        "  onReading: {action: receive, channel: {$ref: '#/channels/telemetry'}}\n",
    )
    validated = runner.invoke(app, ["validate", str(spec)])
    assert validated.exit_code == 0, validated.output
    assert f"{spec}:5:5 #/channels/telemetry: warning:" in validated.output
    assert "{deviceId}, {sensor}" in validated.output
    output = tmp_path / "out"
    result = runner.invoke(app, ["generate", str(spec), "-o", str(output)])
    assert result.exit_code == 0, result.output
    channels = (output / "src" / "t" / "_generated" / "channels.py").read_text()
    assert 'device_id: str = Field(alias="deviceId"' in channels
    assert 'sensor: str = Field(alias="sensor"' in channels


def test_a_kafka_only_document_is_unsupported_without_protocol(tmp_path: Path) -> None:
    spec = tmp_path / "kafka.yaml"
    spec.write_text(KAFKA_ONLY)
    output = tmp_path / "out"
    result = runner.invoke(app, ["generate", str(spec), "-o", str(output)])
    assert result.exit_code == 1
    assert "unsupported:" in result.output
    assert "kafka" in result.output
    assert not output.exists()
    forced = runner.invoke(app, ["generate", str(spec), "-o", str(output), "--protocol", "mqtt"])
    assert forced.exit_code == 0, forced.output
    assert (output / "src" / "kafka_thing" / "handlers" / "receive_events.py").is_file()


def test_missing_spec_file_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_generate_without_spec_outside_a_project_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "[tool.asyncgen]" in result.output


def test_a_package_name_that_is_no_identifier_is_a_usage_error(tmp_path: Path) -> None:
    for name in ("../../evil", "class", "my-package"):
        output = tmp_path / "out"
        result = runner.invoke(
            app,
            [
                "generate",
                str(EXAMPLES / "mqtt" / "asyncapi.yaml"),
                "-o",
                str(output),
                "--package-name",
                name,
            ],
        )
        assert result.exit_code == 2, result.output
        assert "not a valid Python package name" in result.output
        assert not output.exists()


def test_help_reads_naturally_and_completion_can_be_installed() -> None:
    for command in ([], ["generate"], ["validate"], ["acl"], ["diff"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output and "--no-" not in result.output, result.output
        assert "[default: False]" not in result.output
    top = runner.invoke(app, ["--help"]).output
    assert "--install-completion" in top
    commands = top.split("Commands:")[1]
    assert "..." not in commands  # each command's summary fits its line


def test_only_a_generate_command_line_starts_the_models_child_before_parsing() -> None:
    from asyncgen.cli import _generating

    assert _generating(["generate", "spec.yaml", "-o", "out"])
    assert _generating(["generate"])
    assert not _generating(["generate", "--help"])
    assert not _generating(["validate", "spec.yaml"])
    assert not _generating(["--version"])
    assert not _generating([])


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_generate_leaves_no_process_behind_when_the_project_is_up_to_date(
    tmp_path: Path,
) -> None:
    output = tmp_path / "up-to-date-service"
    spec = EXAMPLES / "mqtt" / "asyncapi.yaml"
    command = [sys.executable, "-m", "asyncgen", "generate", str(spec), "-o", str(output)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    again = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    assert "up to date" in again.stdout
    # The child started for the models, never needed, is gone with the command.
    assert _processes_naming(str(output)) == []
