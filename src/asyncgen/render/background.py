"""Work done in a forked child process while this one goes on.

Generating the models (datamodel-code-generator) and formatting them (black) is most of a
first generation's time, and half of that is importing the two; rendering and formatting
the templates needs nothing the models produce. On a machine with a second core the two
run side by side:

- `prepare(*warm_up)` forks the child early, before the document is even read, and the
  child runs the warm-up steps (the imports) while this process loads the document,
  until its job arrives: the job goes first, and a step not run is left to it;
- `Background(work, args)` sends `work(*args)` to that child (or forks one), and
  `result()` takes its value or re-raises its exception, both pickled through a pipe.

Where fork is missing (Windows), only one core is usable, other threads run (forking
them is unsafe) or `ASYNCGEN_JOBS=1` is set, the work runs in this process instead, when
its result is asked for. The result is the same either way.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_prepared: _Child | None = None


def can_fork() -> bool:
    if not hasattr(os, "fork") or os.environ.get("ASYNCGEN_JOBS") == "1":
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) > 1 and threading.active_count() == 1


def prepare(*warm_up: Callable[[], None]) -> None:
    """Fork the child for the next `Background` now; meanwhile it runs the `warm_up`
    steps in order, as long as no job has arrived."""
    global _prepared
    if _prepared is None and can_fork():
        _prepared = _Child(warm_up)


def discard_prepared() -> None:
    global _prepared
    if _prepared is not None:
        _prepared.close()
        _prepared = None


class Background(Generic[T]):
    """`work(*args)`, started now in a child process when possible; `result()` waits.

    `work` must be a module-level function and `args` picklable. `start=False` runs it
    in this process instead, when its result is asked for: for work known to be quick.
    Use as a context manager: leaving it stops a child whose result was never taken.
    """

    def __init__(
        self, work: Callable[..., T], args: tuple[Any, ...] = (), *, start: bool = True
    ) -> None:
        global _prepared
        self._work, self._args = work, args
        self._child: _Child | None = None
        if start and can_fork():
            child, _prepared = _prepared or _Child(), None
            if child.send(work, args):
                self._child = child
            else:  # the child is gone: the work will run here
                child.close()
        else:
            discard_prepared()

    def result(self) -> T:
        if self._child is None:
            return self._work(*self._args)
        child, self._child = self._child, None
        try:
            payload = child.receive()
        finally:
            child.close()
        if not payload:  # the child died without a word (killed, out of memory): do it here
            return self._work(*self._args)
        try:
            ok, value = pickle.loads(payload)
        except Exception as exc:  # an exception that pickles but does not unpickle
            raise RuntimeError(f"the background work failed: {exc}") from None
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def close(self) -> None:
        """Stop the child if its result was never taken."""
        if self._child is not None:
            self._child.close()
            self._child = None

    def __enter__(self) -> Background[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Child:
    """A forked process that runs the `warm_up` steps until the one job sent to it
    arrives, then the job."""

    def __init__(self, warm_up: tuple[Callable[[], None], ...] = ()) -> None:
        job_read, job_write = os.pipe()
        result_read, result_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            try:
                os.close(job_write)
                os.close(result_read)
                _serve(warm_up, job_read, result_write)
            finally:
                os._exit(0)
        os.close(job_read)
        os.close(result_write)
        self._pid: int | None = pid
        self._jobs: int | None = job_write
        self._results: int | None = result_read

    def send(self, work: Callable[..., object], args: tuple[Any, ...]) -> bool:
        """Hand the job over; False when the child is gone."""
        # Each descriptor is forgotten before the file object that now owns it can
        # close it, so that `close()` never closes a number twice.
        fd, self._jobs = self._jobs, None
        assert fd is not None
        try:
            with os.fdopen(fd, "wb") as pipe:
                pipe.write(pickle.dumps((work, args)))
        except OSError:  # BrokenPipeError: the child died before it read its job
            return False
        except (pickle.PicklingError, RecursionError):  # nested too deeply to send
            return False
        return True

    def receive(self) -> bytes:
        """The child's answer (empty when it died without one); it has ended then."""
        fd, self._results = self._results, None
        assert fd is not None
        with os.fdopen(fd, "rb") as pipe:
            payload = pipe.read()
        self._reap()
        return payload

    def close(self) -> None:
        """Stop the child if it still runs, and reap it."""
        for fd in (self._jobs, self._results):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._jobs = self._results = None
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> None:
        if self._pid is not None:
            os.waitpid(self._pid, 0)
            self._pid = None


def _serve(warm_up: tuple[Callable[[], None], ...], jobs: int, results: int) -> None:
    # The caller's output must not wait for this process to end: no inherited streams.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    # Take the job while warming up, so that the parent never blocks writing it.
    received = bytearray()
    reader = threading.Thread(target=_read_all, args=(jobs, received))
    reader.start()
    for step in warm_up:
        if not reader.is_alive():  # the job (or the end of the parent's need) is here
            break
        with contextlib.suppress(Exception):
            step()
    reader.join()
    if not received:  # the parent went on without us
        return
    # The models make and drop many cyclic objects: collect them here, though rarely
    # (the parent, short-lived and keeping what it makes, runs without the collector).
    # What this process inherited or imported stays, and is left out of every
    # collection: walking it would cost time, and copy each of its memory pages.
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)
    gc.enable()
    work, args = pickle.loads(received)
    payload = _outcome(work, args)
    with os.fdopen(results, "wb") as pipe:
        pipe.write(payload)


def _read_all(fd: int, into: bytearray) -> None:
    with os.fdopen(fd, "rb") as pipe:
        into.extend(pipe.read())


def _outcome(work: Callable[..., object], args: tuple[Any, ...]) -> bytes:
    """The pickled `(True, value)` or `(False, exception)` of `work(*args)`."""
    try:
        return pickle.dumps((True, work(*args)))
    except BaseException as exc:
        exc.add_note(f"in asyncgen's background process:\n{traceback.format_exc()}")
        try:
            return pickle.dumps((False, exc))
        except Exception:  # an exception that does not pickle: keep its text
            return pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
