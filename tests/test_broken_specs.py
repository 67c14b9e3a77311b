"""Broken documents, one per failure (tests/broken/): `asyncgen` refuses each quickly, with
a message that names the file and the place, no traceback, and nothing written.

The messages are the product: they are snapshotted (tests/__snapshots__/), with the
machine's paths replaced by placeholders. Run `pytest tests/test_broken_specs.py
--snapshot-update` after changing a message, and read the snapshot.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from syrupy.assertion import SnapshotAssertion

BROKEN = Path(__file__).resolve().parent / "broken"

#: Every broken document and where its error is reported: `line:column`, or None when
#: the message can only name the file (a binary file has no lines; the choice of
#: protocol is about the whole document).
CASES: dict[str, str | None] = {
    "alias_bomb.yaml": r"\d+:\d+",
    "avro_payload.yaml": r"17:23",
    "binary.yaml": None,
    "broken_local_ref.yaml": r"10:9",
    "code_choosing_extension.yaml": r"15:31",
    "deeply_nested_items.json": r"1:3647",
    "duplicate_operation_ids.yaml": r"14:20",
    "empty.yaml": r"1:1",
    "impossible_constraints.yaml": r"15:24",
    "kafka_only.yaml": None,
    "long_integer.json": r"9:53",
    "long_ref_file_name.yaml": r"11:11",
    "malformed_payload_schema.yaml": r"14:15",
    "missing_info.yaml": r"1:1",
    "missing_ref_file.yaml": r"10:9",
    "not_a_mapping.yaml": r"1:1",
    "nul_in_ref.yaml": r"11:11",
    "protobuf_payload.yaml": r"12:19",
    "ref_outside_folder.yaml": r"10:9",
    "remote_ref.yaml": r"10:9",
    "trait_header_pattern.yaml": r"27:22",
    "undeclared_parameter.yaml": r"7:5",
    "unknown_version.yaml": r"1:11",
    "wrong_action.yaml": r"14:13",
    "yaml_syntax_error.yaml": r"8:14",
}
#: Valid AsyncAPI that asyncgen cannot generate code for: `validate` accepts them.
VALID_BUT_UNSUPPORTED = {"kafka_only.yaml", "protobuf_payload.yaml"}
#: Broken documents that `validate` does not catch yet (and why).
NOT_VALIDATED: dict[str, str] = {}
#: A run that has not ended by then hangs (a deeply nested or self-referencing document
#: that the loader follows forever): `subprocess.TimeoutExpired` fails the test. How fast
#: refusals are is measured in bench/, not asserted here.
HANG_SECONDS = 60


def asyncgen(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command as a user would, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "asyncgen", *args],
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS,
    )


def placeholders(text: str, tmp_path: Path) -> str:
    """The output with this machine's folders replaced, so that snapshots are portable."""
    for folder, name in ((BROKEN, "<broken>"), (REPO, "<repo>"), (tmp_path, "<tmp>")):
        text = text.replace(str(folder), name)
    return re.sub(r"errors\.pydantic\.dev/[0-9.]+/", "errors.pydantic.dev/<version>/", text)


def assert_refused(result: subprocess.CompletedProcess[str], spec: Path, where: str | None) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    if where is None:
        assert str(spec) in output, output
    else:
        assert re.search(rf"{re.escape(str(spec))}:{where} ", output), output


def test_every_broken_document_has_a_case() -> None:
    assert sorted(path.name for path in BROKEN.iterdir()) == sorted(CASES)


def test_the_binary_document_is_binary() -> None:
    assert b"\x00" in (BROKEN / "binary.yaml").read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_generate_refuses_with_a_located_message_and_writes_nothing(
    name: str, tmp_path: Path, snapshot: SnapshotAssertion
) -> None:
    spec = BROKEN / name
    output = tmp_path / "out"
    result = asyncgen("generate", str(spec), "-o", str(output))
    assert_refused(result, spec, CASES[name])
    assert "nothing written" in result.stderr
    assert not output.exists()
    assert sorted(tmp_path.iterdir()) == []
    assert {
        "stdout": placeholders(result.stdout, tmp_path),
        "stderr": placeholders(result.stderr, tmp_path),
    } == snapshot


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=NOT_VALIDATED[name], strict=True))
        if name in NOT_VALIDATED
        else name
        for name in sorted(set(CASES) - VALID_BUT_UNSUPPORTED)
    ],
)
def test_validate_refuses_with_a_located_message(
    name: str, tmp_path: Path, snapshot: SnapshotAssertion
) -> None:
    spec = BROKEN / name
    result = asyncgen("validate", str(spec))
    assert_refused(result, spec, CASES[name])
    assert {
        "stdout": placeholders(result.stdout, tmp_path),
        "stderr": placeholders(result.stderr, tmp_path),
    } == snapshot


@pytest.mark.parametrize("name", sorted(VALID_BUT_UNSUPPORTED))
def test_validate_accepts_valid_documents_that_generate_refuses(name: str) -> None:
    result = asyncgen("validate", str(BROKEN / name))
    assert result.returncode == 0, result.stdout + result.stderr
