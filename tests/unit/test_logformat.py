"""`botenv operator --log-format`: every line has a timestamp, level, object and reason."""

from __future__ import annotations

import json
import logging
import re

from botenv.controller.workqueue import CURRENT_OBJECT
from botenv.runtime.logformat import JsonFormatter, TextFormatter


def record(message: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("botenv.test", level, __file__, 1, message, (), None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_time_level_object_and_reason():
    line = JsonFormatter().format(
        record("rolled", reason="ModelChanged", object="BotEnvironment shop/prod")
    )
    data = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["time"])
    assert data | {"time": ""} == {
        "time": "",
        "level": "info",
        "logger": "botenv.test",
        "object": "BotEnvironment shop/prod",
        "reason": "ModelChanged",
        "message": "rolled",
    }


def test_the_object_reconciled_now_and_kopfs_reference_name_the_object():
    token = CURRENT_OBJECT.set("ModelTag shop/production")
    try:
        data = json.loads(JsonFormatter().format(record("resolved")))
    finally:
        CURRENT_OBJECT.reset(token)
    assert (data["object"], data["reason"]) == ("ModelTag shop/production", None)
    ref = {"kind": "BotEnvironment", "namespace": "shop", "name": "prod"}
    assert json.loads(JsonFormatter().format(record("x", k8s_ref=ref)))["object"] == (
        "BotEnvironment shop/prod"
    )


def test_text_lines_carry_the_same_fields():
    line = TextFormatter().format(
        record("not applied", logging.WARNING, reason="SecretMissing", object="BotEnvironment a/b")
    )
    assert re.fullmatch(
        r"\S+Z WARNING botenv\.test object=\"BotEnvironment a/b\" reason=SecretMissing "
        r"not applied",
        line,
    ), line
    assert " object=- reason=- hello" in TextFormatter().format(record("hello"))
