"""Stage 1: read a spec and the files its `$ref`s reach, keeping source positions."""

from asyncgen.load.document import Document, Ref, RefPolicy, load_document
from asyncgen.load.source import SourceFile, read_source

__all__ = ["Document", "Ref", "RefPolicy", "SourceFile", "load_document", "read_source"]
