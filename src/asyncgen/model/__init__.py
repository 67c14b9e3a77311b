"""Stage 3: the version-neutral intermediate model the templates are rendered from."""

from asyncgen.model.build import build_api
from asyncgen.model.ir import Api, Channel, Example, Message, Operation, Parameter, Reply, Server

__all__ = [
    "Api",
    "Channel",
    "Example",
    "Message",
    "Operation",
    "Parameter",
    "Reply",
    "Server",
    "build_api",
]
