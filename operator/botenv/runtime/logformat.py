"""The operator's log lines: text or JSON, each with a timestamp, level, object and reason.

object: the resource a line is about, "Kind namespace/name": given by the caller
(extra={"object": ...}), kopf's own reference for its per-object loggers, or the object the
work-queue worker reconciles (controller.workqueue.CURRENT_OBJECT). reason: the
CamelCase reason of an Event or condition when the line reports one (extra={"reason": ...}),
otherwise empty ("-" in text).
"""

from __future__ import annotations

import datetime
import json
import logging

from botenv.controller.workqueue import CURRENT_OBJECT

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")


def _object(record: logging.LogRecord) -> str:
    given = getattr(record, "object", None)
    if isinstance(given, str) and given:
        return given
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, dict) and ref.get("name"):
        where = f"{ref['namespace']}/{ref['name']}" if ref.get("namespace") else ref["name"]
        return f"{ref.get('kind', '')} {where}".strip()
    return CURRENT_OBJECT.get()


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """TIME LEVEL logger object="Kind ns/name" reason=Reason message"""

    def format(self, record: logging.LogRecord) -> str:
        obj = _object(record)
        line = (
            f"{_timestamp(record)} {record.levelname} {record.name}"
            f" object={json.dumps(obj) if obj else '-'}"
            f" reason={getattr(record, 'reason', '') or '-'} {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, object, reason, message."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "object": _object(record) or None,
            "reason": getattr(record, "reason", None) or None,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure(log_format: str, level: str) -> None:
    """After kopf.configure: every handler of the root logger writes this format."""
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(level.upper())
