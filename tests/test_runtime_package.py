"""The service runtime as a package: copied byte for byte into every generated project,
recorded in the manifest, formatted, `mypy --strict` clean, and version-stamped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import black
import isort
import pytest
from black.mode import TargetVersion
from conftest import EXAMPLES, REPO
from typer.testing import CliRunner

import asyncgen.render.project
import asyncgen.write.manifest
from asyncgen import runtime
from asyncgen.cli import app
from asyncgen.render.protocols import PROFILES, RUNTIME_COMMON
from asyncgen.write import MANIFEST

RUNTIME = REPO / "src" / "asyncgen" / "runtime"
PACKAGES = {"mqtt": "iot_device_management", "nats": "iot_device_management_nats"}


def copied_runtime(project: Path, package: str) -> dict[str, bytes]:
    folder = project / "src" / package / "_generated" / "runtime"
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.py"))}


@pytest.mark.parametrize("protocol", sorted(PACKAGES))
def test_every_runtime_file_in_the_golden_records_is_the_package_file(protocol: str) -> None:
    copies = copied_runtime(EXAMPLES / protocol / "generated", PACKAGES[protocol])
    expected = {*RUNTIME_COMMON, *PROFILES[protocol].runtime_adapters}  # type: ignore[index]
    assert set(copies) == expected
    for name, content in copies.items():
        assert content == (RUNTIME / name).read_bytes(), name


def test_a_project_holds_only_its_own_protocol_s_adapter() -> None:
    mqtt = copied_runtime(EXAMPLES / "mqtt" / "generated", PACKAGES["mqtt"])
    nats = copied_runtime(EXAMPLES / "nats" / "generated", PACKAGES["nats"])
    assert "nats.py" not in mqtt
    assert "mqtt.py" not in nats and "aiomqtt_client.py" not in nats


def test_the_runtime_is_every_module_of_the_package() -> None:
    shipped = {*RUNTIME_COMMON, *(f for p in PROFILES.values() for f in p.runtime_adapters)}
    assert shipped == {path.name for path in RUNTIME.glob("*.py")}


@pytest.mark.parametrize("protocol", sorted(PACKAGES))
def test_the_manifest_records_the_runtime_copy(protocol: str) -> None:
    project = EXAMPLES / protocol / "generated"
    recorded = json.loads((project / MANIFEST).read_text())["files"]
    runtime_paths = [path for path in recorded if "/_generated/runtime/" in path]
    assert len(runtime_paths) == len(copied_runtime(project, PACKAGES[protocol]))


def test_the_runtime_is_formatted_as_isort_and_black_write_it() -> None:
    mode = black.Mode(target_versions={TargetVersion.PY311})
    for path in sorted(RUNTIME.glob("*.py")):
        source = path.read_text()
        for package in PACKAGES.values():  # as the generated projects' check sorts it
            formatted = black.format_str(
                isort.code(source, profile="black", known_first_party=[package]), mode=mode
            )
            assert formatted == source, path.name


def test_the_runtime_passes_mypy_strict_and_ruff() -> None:
    mypy = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(RUNTIME)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert mypy.returncode == 0, mypy.stdout
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(RUNTIME)],
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout


def test_generated_modules_refuse_a_runtime_of_another_version() -> None:
    runtime.check_version(runtime.VERSION)
    with pytest.raises(runtime.RuntimeVersionError, match="regenerate"):
        runtime.check_version(runtime.VERSION + 1)
    stamp = EXAMPLES / "mqtt" / "generated" / "src" / PACKAGES["mqtt"] / "_generated"
    assert f"RUNTIME_VERSION = {runtime.VERSION}\n" in (stamp / "__init__.py").read_text()


def test_check_reports_a_stale_runtime_copy_and_generate_refreshes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "mqtt"
    shutil.copytree(EXAMPLES / "mqtt", work)
    project = work / "generated"
    runner = CliRunner()
    assert runner.invoke(app, ["generate", "--check", "-o", str(project)]).exit_code == 0
    # A newer asyncgen whose runtime changed.
    newer = tmp_path / "runtime"
    shutil.copytree(RUNTIME, newer)
    core = newer / "core.py"
    core.write_text(core.read_text() + "\n\n# changed\n")
    for module in (asyncgen.render.project, asyncgen.write.manifest):
        monkeypatch.setattr(module, "runtime_sources", lambda: newer)
    stale = runner.invoke(app, ["generate", "--check", "--quiet", "-o", str(project)])
    assert stale.exit_code == 1, stale.output
    assert "_generated/runtime/core.py" in stale.output
    assert runner.invoke(app, ["generate", "-o", str(project)]).exit_code == 0
    copy = project / "src" / PACKAGES["mqtt"] / "_generated" / "runtime" / "core.py"
    assert copy.read_bytes() == core.read_bytes()
