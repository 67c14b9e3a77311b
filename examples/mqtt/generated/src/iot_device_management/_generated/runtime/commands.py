"""The service's command line: `python -m <package>` serves;
`python -m <package> dead-letters list|replay|purge [--operation ID] [--limit N]`
manages what it dead-lettered.

Dead letters are kept in stores (the local spool; on NATS the dead-letter stream; on
MQTT the dead-letter session, collected into the spool first). `list` prints one line
each, `replay` publishes each original to its original address with its own headers and
then removes it from its store, `purge` removes it.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TextIO

from .deadletters import DeadLetter
from .spool import Spool, SpooledLetter

Action = Literal["list", "replay", "purge"]


class CommandError(Exception):
    """A command cannot be carried out; its message says why, for the user."""


@dataclass(frozen=True)
class Kept:
    """A dead letter in a store, with what the store needs to remove it."""

    letter: DeadLetter
    key: Any


class DeadLetterStore(Protocol):
    """Where dead letters are kept, oldest first."""

    #: Said in the summary line: "the spool /srv/dead-letters", "the stream X".
    name: str

    def letters(self) -> AsyncIterator[Kept]: ...

    async def remove(self, kept: Kept) -> None: ...


class DeadLetters(Protocol):
    """A protocol's dead letters: their stores and how to send an original back."""

    def stores(self) -> Sequence[DeadLetterStore]: ...

    async def republish(self, letter: DeadLetter) -> None: ...


class Managed(Protocol):
    """What the command line needs of a service."""

    async def run(self) -> None: ...

    def dead_letters(self) -> AbstractAsyncContextManager[DeadLetters]: ...


class SpoolStore:
    """The local spool as a store."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.name = f"the spool {spool.directory}"

    async def letters(self) -> AsyncIterator[Kept]:
        for spooled in self.spool.letters():
            yield Kept(spooled.letter, spooled)

    async def remove(self, kept: Kept) -> None:
        spooled: SpooledLetter = kept.key
        self.spool.remove(spooled)


def describe(letter: DeadLetter) -> str:
    """One line of `list`: time, operation, reason code, address, size, reason."""
    return "\t".join(
        (
            letter.time.isoformat(timespec="seconds"),
            letter.operation,
            letter.code,
            letter.address,
            f"{len(letter.payload)} B",
            letter.reason,
        )
    )


async def manage(
    dead_letters: DeadLetters,
    action: Action,
    *,
    operation: str | None = None,
    limit: int | None = None,
    out: TextIO | None = None,
) -> int:
    """Do `action` to the dead letters (of `operation`, at most `limit`) in every
    store; the number of dead letters it was done to. `list` writes to `out` (standard
    output)."""
    out = out or sys.stdout
    done = 0
    for store in dead_letters.stores():
        count = 0
        async for kept in store.letters():
            if limit is not None and done >= limit:
                break
            if operation is not None and kept.letter.operation != operation:
                continue
            if action == "list":
                print(describe(kept.letter), file=out)
            elif action == "replay":
                await dead_letters.republish(kept.letter)
                await store.remove(kept)
            else:
                await store.remove(kept)
            count += 1
            done += 1
        if action != "list" and count:
            past = "replayed" if action == "replay" else "purged"
            print(f"{count} dead letters {past} from {store.name}", file=sys.stderr)
    return done


def parser(program: str) -> argparse.ArgumentParser:
    command_line = argparse.ArgumentParser(
        prog=program, description="Serve, or manage the service's dead letters."
    )
    commands = command_line.add_subparsers(dest="command", metavar="COMMAND")
    dead_letters = commands.add_parser(
        "dead-letters",
        help="list, replay or purge the dead letters",
        description="list: one line each (time, operation, reason code, address, "
        "size, reason); replay: publish the originals to their addresses again, then "
        "drop them; purge: drop them.",
    )
    dead_letters.add_argument("action", choices=("list", "replay", "purge"))
    dead_letters.add_argument(
        "--operation", metavar="ID", help="only the dead letters of this operation"
    )
    dead_letters.add_argument(
        "--limit", type=_positive, metavar="N", help="at most N dead letters"
    )
    return command_line


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


async def run_command(
    service: Managed, argv: Sequence[str], program: str = "service"
) -> int:
    """Serve (no arguments), or run the command `argv` asks for; the exit status."""
    arguments = parser(program).parse_args(list(argv))
    if arguments.command is None:
        await service.run()
        return 0
    try:
        async with service.dead_letters() as dead_letters:
            count = await manage(
                dead_letters,
                arguments.action,
                operation=arguments.operation,
                limit=arguments.limit,
            )
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if arguments.action == "list":
        print(f"{count} dead letters", file=sys.stderr)
    return 0
