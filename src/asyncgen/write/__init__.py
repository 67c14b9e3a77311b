"""Stage 5: put a planned project on disk, atomically, never losing the user's code.

Generated files are rewritten; user files are created only when missing. A generated
file whose content no longer matches the hash recorded at the last generation was edited
by hand: the write stops and names it unless forced. Every file is first written to a
temporary name beside its target; only when all of them are written are they renamed
into place, so a failure leaves the tree as it was.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from asyncgen.render.project import PlannedFile

MANIFEST = ".asyncgen-manifest.json"


def digest(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


@dataclass
class Report:
    """What a generation did, or would do, to each file."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)

    @property
    def stale(self) -> list[str]:
        """Generated files that differ from what the spec produces."""
        return sorted(set(self.created) - set(self.kept_new_user) | set(self.updated))

    kept_new_user: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = []
        for label, paths in (
            ("created", self.created),
            ("updated", self.updated),
            ("unchanged", self.unchanged),
            ("kept", self.kept),
            ("orphaned", self.orphaned),
        ):
            if paths:
                lines.append(f"{label} ({len(paths)}):")
                lines.extend(f"  {path}" for path in paths)
        return "\n".join(lines)


class EditedFilesError(Exception):
    """Generated files were edited by hand; regenerating would lose those edits."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(", ".join(paths))
        self.paths = paths


def read_manifest(root: Path) -> dict[str, str]:
    try:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def manifest_file(plan: list[PlannedFile], tool_version: str) -> PlannedFile:
    hashes = {f.path: digest(f.content) for f in plan if f.owner == "generated"}
    content = json.dumps({"asyncgen": tool_version, "files": hashes}, indent=2, sort_keys=True)
    return PlannedFile(MANIFEST, content + "\n", "generated")


def compare(
    root: Path, plan: list[PlannedFile], handler_dir: str | None = None, handler_names: set[str] | None = None
) -> Report:
    """What writing `plan` under `root` would do; nothing is written."""
    report = Report()
    manifest = read_manifest(root)
    for planned in plan:
        target = root / planned.path
        exists = target.is_file()
        if planned.owner == "user":
            if exists:
                report.kept.append(planned.path)
            else:
                report.created.append(planned.path)
                report.kept_new_user.append(planned.path)
            continue
        if not exists:
            report.created.append(planned.path)
            report.diffs[planned.path] = _diff(planned.path, "", planned.content)
            continue
        current = target.read_text(encoding="utf-8", errors="replace")
        if current == planned.content:
            report.unchanged.append(planned.path)
            continue
        recorded = manifest.get(planned.path)
        if planned.path != MANIFEST and recorded != digest(current):
            report.edited.append(planned.path)
        report.updated.append(planned.path)
        report.diffs[planned.path] = _diff(planned.path, current, planned.content)
    if handler_dir is not None and handler_names is not None:
        folder = root / handler_dir
        if folder.is_dir():
            for module in sorted(folder.glob("*.py")):
                if module.stem != "__init__" and module.stem not in handler_names:
                    report.orphaned.append(f"{handler_dir}/{module.name}")
    return report


def _diff(path: str, before: str, after: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )


def write_plan(root: Path, plan: list[PlannedFile], report: Report, force: bool = False) -> None:
    """Write what `report` says needs writing; all files or none."""
    if report.edited and not force:
        raise EditedFilesError(report.edited)
    to_write = [
        planned
        for planned in plan
        if planned.path in report.updated
        or (planned.path in report.created)
    ]
    staged: list[tuple[Path, Path]] = []
    try:
        for planned in to_write:
            target = root / planned.path
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temp_name = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".asyncgen-tmp", dir=target.parent
            )
            with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
                stream.write(planned.content)
            staged.append((Path(temp_name), target))
    except BaseException:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
        raise
    for temp, target in staged:
        os.replace(temp, target)
