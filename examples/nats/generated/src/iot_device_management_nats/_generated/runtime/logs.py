"""Logging of a generated service: text, or one JSON object per line.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Protocol


class LogSettings(Protocol):
    @property
    def log_level(self) -> str: ...
    @property
    def log_format(self) -> str: ...


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: LogSettings) -> None:
    """Log to stderr as text or as one JSON object per line."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    logging.basicConfig(
        level=settings.log_level.upper(), handlers=[handler], force=True
    )
