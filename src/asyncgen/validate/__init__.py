"""Stage 2: check a loaded document against AsyncAPI's rules and what generation needs.

This is the only stage that checks the document: `generate` runs exactly these checks,
so `validate` and `generate` never disagree, and the later stages trust what passed.
"""

from asyncgen.asyncapi import Protocol, server_protocol
from asyncgen.errors import Level, Problem
from asyncgen.load import Document
from asyncgen.validate.bindings import check_bindings
from asyncgen.validate.payloads import check_payload_schemas
from asyncgen.validate.semantic import check_semantics
from asyncgen.validate.structure import check_structure


def _target(doc: Document, requested: Protocol | None) -> Protocol | None:
    servers = doc.data.get("servers")
    protocols = [
        str(server.get("protocol", "")).lower()
        for server in (servers.values() if isinstance(servers, dict) else [])
        if isinstance(server, dict)
    ]
    return server_protocol(protocols, requested)


def validate_document(doc: Document, protocol: Protocol | None = None) -> list[Problem]:
    """Every problem at once: the structure, the rules beyond it, the bindings and the
    payload schemas, in one run. Addresses are checked against `protocol`, by default
    the one the document's servers speak."""
    problems = check_structure(doc)
    problems.extend(check_semantics(doc, _target(doc, protocol)))
    problems.extend(check_bindings(doc))
    problems.extend(check_payload_schemas(doc))
    unique: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        unique.setdefault((str(problem.location), problem.message), problem)
    return sorted(
        unique.values(),
        key=lambda p: (
            p.level != Level.ERROR,
            str(p.location.file),
            p.location.line,
            p.location.column,
            p.message,
        ),
    )


__all__ = [
    "check_bindings",
    "check_payload_schemas",
    "check_semantics",
    "check_structure",
    "validate_document",
]
