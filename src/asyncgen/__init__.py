"""asyncgen: generate runnable Python MQTT and NATS services from AsyncAPI documents.

The library's entry point is `asyncgen.generate(spec, config) -> Outcome`, with
`asyncgen.Config`; `asyncgen.generation.validate(spec, config)` checks a document alone.
"""

from __future__ import annotations

from typing import Any

# Written here rather than read from the installed metadata: importing importlib.metadata
# costs every run, the manifest fast path included, more than all else it does there.
__version__ = "0.1.0"

__all__ = ["Config", "Outcome", "__version__", "generate"]


def __getattr__(name: str) -> Any:
    # Imported when first used, so that `import asyncgen` (and `asyncgen --help`) stays light.
    if name in ("Config", "Outcome", "generate"):
        from asyncgen import generation

        return getattr(generation, name)
    raise AttributeError(f"module 'asyncgen' has no attribute {name!r}")
