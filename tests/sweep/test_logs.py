"""The JSON log format: one strict JSON object per record, with the ``extra=`` fields."""

from __future__ import annotations

import json
import logging
import math
import sys

import pytest

from sweep.logs import JsonFormatter


def _reject(constant: str) -> None:
    raise ValueError(f"not strict JSON: {constant}")


def record(**extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "sweep.worker", "levelname": "INFO", "msg": "m %s"})
    made.args = ("x",)
    made.__dict__.update(extra)
    return made


def test_extra_fields_become_keys_and_the_message_is_formatted() -> None:
    line = JsonFormatter().format(record(event="claim", sweep="s", trial=3, worker="h:1:cpu"))
    parsed = json.loads(line)
    assert parsed["message"] == "m x"
    assert parsed["logger"] == "sweep.worker" and parsed["level"] == "INFO"
    assert {k: parsed[k] for k in ("event", "sweep", "trial", "worker")} == {
        "event": "claim",
        "sweep": "s",
        "trial": 3,
        "worker": "h:1:cpu",
    }
    assert "args" not in parsed and "msg" not in parsed  # LogRecord internals stay out


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_diverged_loss_still_gives_strict_json(bad: float) -> None:
    line = JsonFormatter().format(record(event="report", val_loss=bad))
    assert json.loads(line, parse_constant=_reject)["val_loss"] == str(bad)


def test_a_traceback_is_one_field_of_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        failing = record(event="finish")
        failing.exc_info = sys.exc_info()
    line = JsonFormatter().format(failing)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exception"]
