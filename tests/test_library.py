"""The library entry point: `asyncgen.generate(spec, config) -> Outcome` plans, checks,
dry-runs or writes, with the same checks and results as the command."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLES

import asyncgen
import asyncgen.load.document
from asyncgen.errors import SpecError, UsageError
from asyncgen.write import MANIFEST, EditedFilesError

SPEC = EXAMPLES / "mqtt" / "asyncapi.yaml"
PACKAGE = "iot_device_management"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    copy = tmp_path / "asyncapi.yaml"
    shutil.copy(SPEC, copy)
    return copy


def test_dry_run_plans_everything_and_writes_nothing(spec: Path, tmp_path: Path) -> None:
    output = tmp_path / "svc"
    outcome = asyncgen.generate(spec, asyncgen.Config(output=output, mode="dry-run"))
    assert not outcome.up_to_date and not outcome.written
    assert outcome.report is not None
    assert f"src/{PACKAGE}/_generated/models.py" in outcome.report.created
    assert MANIFEST in outcome.report.created
    assert not output.exists()


def test_write_then_check_answers_from_the_manifest(spec: Path, tmp_path: Path) -> None:
    output = tmp_path / "svc"
    written = asyncgen.generate(spec, asyncgen.Config(output=output))
    assert written.written and written.protocol == "mqtt" and written.package == PACKAGE
    assert (output / f"src/{PACKAGE}/_generated/service.py").is_file()

    checked = asyncgen.generate(spec, asyncgen.Config(output=output, mode="check"))
    assert checked.up_to_date and checked.report is None

    (output / f"src/{PACKAGE}/_generated/channels.py").write_text("# mine\n")
    stale = asyncgen.generate(spec, asyncgen.Config(output=output, mode="check"))
    assert stale.stale == [f"src/{PACKAGE}/_generated/channels.py"]
    with pytest.raises(EditedFilesError) as edited:
        asyncgen.generate(spec, asyncgen.Config(output=output))
    assert edited.value.paths == [f"src/{PACKAGE}/_generated/channels.py"]


def test_without_an_output_the_spec_is_loaded_once(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    original = asyncgen.load.document.read_source

    def counting(path: Path) -> object:
        loads.append(path)
        return original(path)

    monkeypatch.setattr(asyncgen.load.document, "read_source", counting)
    monkeypatch.chdir(tmp_path)
    outcome = asyncgen.generate(spec, asyncgen.Config(mode="dry-run"))
    assert outcome.target == tmp_path / PACKAGE
    assert loads == [spec.resolve()]


def test_problems_are_raised_not_printed(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("asyncapi: 3.0.0\ninfo: {title: t}\n")
    with pytest.raises(SpecError) as error:
        asyncgen.generate(broken, asyncgen.Config(output=tmp_path / "out"))
    assert [p.location.pointer for p in error.value.problems] == ["/info"]
    with pytest.raises(UsageError):
        asyncgen.generate(tmp_path / "missing.yaml")
    assert not (tmp_path / "out").exists()
