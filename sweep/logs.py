"""Log set-up for the services: plain text lines or one JSON object per line.

Event lines (claim, report, prune, finish, reap, retry) carry ``event``,
``sweep``, ``trial`` and ``worker`` as ``extra=`` fields, so a log pipeline
can filter on them without parsing the message.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = _strict(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, allow_nan=False)


def _strict(value: Any) -> Any:
    """NaN and infinities as strings: strict JSON parsers (jq, Elasticsearch) reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def configure_logging(log_format: LogFormat = "text", level: LogLevel = "info") -> None:
    """Send the process's logs to stderr in ``log_format``, replacing earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)  # library warnings become log lines, in the same format
    logging.getLogger("alembic").setLevel(logging.WARNING)
