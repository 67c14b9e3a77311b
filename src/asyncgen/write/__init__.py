"""Stage 5: put a planned project on disk, atomically, never losing the user's code.

Generated files are rewritten; user files are created only when missing. A generated
file whose content no longer matches the hash recorded at the last generation was edited
by hand: the write stops and names it unless forced. Every file is first written to a
temporary name beside its target; only when all of them are written are they renamed
into place, each replaced file kept under a backup name until the last rename is done,
so a failure at any point leaves the tree (files and folders) as it was.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from asyncgen.plan import PlannedFile
from asyncgen.write.manifest import (
    MANIFEST,
    digest,
    file_hashes,
    last_generated,
    syntax_digest,
)

__all__ = ["MANIFEST", "EditedFilesError", "Report", "Staging", "compare"]


@dataclass
class Report:
    """What a generation did, or would do, to each file."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    #: a unified diff of each generated file created or updated (when asked for)
    diffs: dict[str, str] = field(default_factory=dict)
    #: user-owned files among `created` (missing, so written once)
    kept_new_user: list[str] = field(default_factory=list)
    #: generated files that differ from what the spec produces in their layout only (a
    #: formatter ran over them): rewritten, but neither edited nor stale
    reformatted: list[str] = field(default_factory=list)

    @property
    def stale(self) -> list[str]:
        """Generated files that differ from what the spec produces."""
        changed = set(self.updated) - set(self.reformatted)
        return sorted((set(self.created) - set(self.kept_new_user)) | changed)

    def joined(self, other: Report, order: list[str]) -> Report:
        """This report and `other`, made of other files, as one; the paths of each list
        in the order of `order` (paths it lacks, such as orphaned modules, after them)."""
        rank = {path: index for index, path in enumerate(order)}
        lists = {
            item.name: sorted(
                [*getattr(self, item.name), *getattr(other, item.name)],
                key=lambda path: rank.get(path, len(rank)),
            )
            for item in fields(self)
            if item.name != "diffs"
        }
        return Report(**lists, diffs={**self.diffs, **other.diffs})

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

    def __init__(self, paths: list[str], root: Path) -> None:
        super().__init__(", ".join(paths))
        self.paths = paths
        self.root = root


def compare(
    root: Path,
    plan: list[PlannedFile],
    handler_dir: str | None = None,
    handler_names: set[str] | None = None,
    *,
    diffs: bool = True,
) -> Report:
    """What writing `plan` under `root` would do; nothing is written. `diffs=False`
    leaves out the diffs, which only `--check` shows."""
    report = Report()
    manifest = file_hashes(root)
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
            if diffs:
                report.diffs[planned.path] = _diff(planned.path, "", planned.content)
            continue
        current = target.read_text(encoding="utf-8", errors="replace")
        if current == planned.content:
            report.unchanged.append(planned.path)
            continue
        recorded = manifest.get(planned.path)
        if planned.path != MANIFEST and recorded != digest(current):
            _touched(planned, current, last_generated(recorded), report)
        report.updated.append(planned.path)
        if diffs:
            report.diffs[planned.path] = _diff(planned.path, current, planned.content)
    if handler_dir is not None and handler_names is not None:
        folder = root / handler_dir
        if folder.is_dir():
            for module in sorted(folder.glob("*.py")):
                if module.stem != "__init__" and module.stem not in handler_names:
                    report.orphaned.append(f"{handler_dir}/{module.name}")
    return report


def _touched(planned: PlannedFile, current: str, last: str | None, report: Report) -> None:
    """Sort a generated file changed since the last generation: a formatter's changes
    leave its syntax tree and comments as they were, anything else is a hand edit. It is
    compared with the last generation's copy when the cache kept one, else with what the
    spec produces now."""
    tree = syntax_digest(planned.path, current)
    if tree is None or tree != syntax_digest(planned.path, last or planned.content):
        report.edited.append(planned.path)
    elif last is None or tree == syntax_digest(planned.path, planned.content):
        report.reformatted.append(planned.path)


def _diff(path: str, before: str, after: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )


TEMP_SUFFIX = ".asyncgen-tmp"
BACKUP_SUFFIX = ".asyncgen-bak"


@dataclass
class _Step:
    """One file on its way into place: its staged copy and, once it has one, a backup."""

    target: Path
    temp: Path
    backup: Path | None = None
    committed: bool = False


class Staging:
    """Files on their way into a project, all of them or none.

    Three phases: `stage` writes each file that needs writing under a temporary name
    beside its target (creating missing folders), and may be called several times;
    `commit` hard-links (or copies) every target about to be replaced to a backup name,
    then renames the staged files into place. A failure in any phase, or `discard`,
    undoes what was done: renamed targets get their backups back, new files are removed,
    temporary files are deleted, and folders this staging created are removed again.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._steps: list[_Step] = []
        self._created_dirs: list[Path] = []
        self._new_file_mode = _new_file_mode()

    def stage(self, plan: list[PlannedFile], report: Report, force: bool = False) -> None:
        """Stage the files of `plan` that `report` says are created or updated; refuses
        (raising EditedFilesError, staging nothing) when it names files edited by hand."""
        if report.edited and not force:
            raise EditedFilesError(report.edited, self.root)
        wanted = set(report.updated) | set(report.created)
        try:
            with _held_stops():
                for planned in plan:
                    if planned.path in wanted:
                        target = self.root / planned.path
                        _make_dirs(target.parent, self._created_dirs)
                        self._steps.append(_stage(target, planned.content, self._new_file_mode))
        except BaseException:
            self.discard()
            raise

    def commit(self) -> None:
        """Put every staged file in place."""
        steps = self._steps
        try:
            with _held_stops():
                for step in steps:
                    if step.target.exists():
                        step.backup = _backup(step.target, step.temp)
                for step in steps:
                    os.replace(step.temp, step.target)
                    step.committed = True
        except BaseException:
            self.discard()
            raise
        for step in steps:
            if step.backup is not None:
                with contextlib.suppress(OSError):
                    step.backup.unlink()
        self._steps, self._created_dirs = [], []

    def discard(self) -> None:
        """Undo everything staged or committed so far."""
        with _held_stops():
            _roll_back(self._steps, self._created_dirs)
            self._steps, self._created_dirs = [], []


#: The signals that stop a run: Ctrl-C, and SIGTERM (which asyncgen's CLI turns into an
#: exit, see `cli.main`).
_STOPS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _held_stops() -> Iterator[None]:
    """SIGINT and SIGTERM held back meanwhile (they arrive right after), so that a run
    stopped while it writes has recorded every file and folder it made, and undoes them.
    Only where the main thread can block signals (POSIX)."""
    if not hasattr(signal, "pthread_sigmask") or (
        threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _make_dirs(folder: Path, created: list[Path]) -> None:
    """Create `folder` and its missing parents, recording each one made, outermost first."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _new_file_mode() -> int:
    """The mode `open()` would give a new file (mkstemp's is always 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _stage(target: Path, content: str, new_file_mode: int) -> _Step:
    """Write `content` to a fresh temporary file beside `target`, with target's mode."""
    handle, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent
    )
    step = _Step(target, Path(name))
    try:
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except OSError:
            mode = new_file_mode
        os.chmod(name, mode)
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            handle = -1
            stream.write(content)
    except BaseException:
        if handle != -1:
            os.close(handle)
        step.temp.unlink(missing_ok=True)
        raise
    return step


def _backup(target: Path, temp: Path) -> Path:
    """A second name for `target`'s current content, so a rename can be undone."""
    backup = temp.with_name(temp.name.removesuffix(TEMP_SUFFIX) + BACKUP_SUFFIX)
    if backup.exists():
        raise FileExistsError(f"{backup} is in the way")
    try:
        os.link(target, backup)
    except OSError:  # no hard links on this file system: copy instead
        try:
            shutil.copy2(target, backup)
        except BaseException:
            backup.unlink(missing_ok=True)
            raise
    return backup


def _roll_back(steps: list[_Step], created_dirs: list[Path]) -> None:
    """Best effort: put every target back as it was, delete what this write added."""
    for step in reversed(steps):
        try:
            if step.committed and step.backup is not None:
                os.replace(step.backup, step.target)
            elif step.committed:
                step.target.unlink(missing_ok=True)
            elif step.backup is not None:
                step.backup.unlink(missing_ok=True)
            step.temp.unlink(missing_ok=True)
        except OSError:
            continue  # leave the backup where it is rather than lose it
    for folder in reversed(created_dirs):
        with contextlib.suppress(OSError):
            folder.rmdir()
