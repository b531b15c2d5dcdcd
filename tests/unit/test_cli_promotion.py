"""The promotion time of a tag's moves in `botenv status` and `botenv history`:
status.servedAt - status.resolvedAt, "rolling" while its environments do not all serve the
tag's model yet, "-" without environments."""

from __future__ import annotations

import datetime

import pytest

from botenv.cli import output

NOW = datetime.datetime(2024, 6, 12, 12, 0, 0, tzinfo=datetime.UTC)
RESOLVED, SERVED = "2024-06-12T11:55:00Z", "2024-06-12T11:57:13Z"


def mtag(*, served: str = SERVED, environments=("production",), refused=(), history=()) -> dict:
    status: dict = {
        "model": "m2.tar.gz",
        "digest": "0123456789abcdef",
        "resolvedAt": RESOLVED,
        "environments": list(environments),
        "history": list(history),
        "conditions": [{"type": "Ready", "status": "True", "reason": "Resolved"}],
    }
    if served:
        status["servedAt"] = served
    if refused:
        status["refusedBy"] = [
            {"environment": e, "reason": "RolledBack", "message": "no"} for e in refused
        ]
    return {
        "metadata": {"name": "production", "namespace": "bots"},
        "spec": {"model": "m2.tar.gz"},
        "status": status,
    }


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0s"), (45, "45s"), (133, "2m13s"), (600, "10m0s"), (3725, "1h2m"), (90061, "1d1h")],
)
def test_duration_reads_like_kubectl(seconds, expected):
    assert output.duration(seconds) == expected


def test_the_row_carries_served_at_and_the_promotion_seconds():
    row = output.tag_summary(mtag())
    assert (row["servedAt"], row["promotionSeconds"]) == (SERVED, 133)
    rolling = output.tag_summary(mtag(served=""))
    assert (rolling["servedAt"], rolling["promotionSeconds"]) == ("", None)


def tag_line(body: dict, **kwargs: object) -> list[str]:
    text = output.status_text([], [output.tag_summary(body)], namespace="bots", now=NOW, **kwargs)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("TAG"))
    return [lines[header], lines[header + 1]]


def test_status_shows_the_promotion_time_of_the_last_move():
    header, row = tag_line(mtag())
    assert header.split() == [
        "TAG",
        "MODEL",
        "DIGEST",
        "RESOLVED",
        "PROMOTED",
        "READY",
        "ENVIRONMENTS",
    ]
    # The column lines up with its header.
    assert row[header.index("PROMOTED") :].split()[0] == "2m13s"


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (mtag(served=""), "rolling"),
        (mtag(served="", environments=()), "-"),
        (mtag(served="", refused=("production",)), "refused"),
    ],
)
def test_status_says_rolling_or_nothing_without_a_promotion_time(body, shown):
    header, row = tag_line(body)
    assert row[header.index("PROMOTED") :].split()[0] == shown


def test_history_shows_each_moves_promotion_time():
    earlier = [
        {
            "model": "m1.tar.gz",
            "digest": "feedbeef",
            "resolvedAt": "2024-06-01T00:00:00Z",
            "servedAt": "2024-06-01T00:00:45Z",
        },
        {"model": "m0.tar.gz", "digest": "feedbeef", "resolvedAt": "2024-05-01T00:00:00Z"},
    ]
    lines = output.history_text(mtag(history=earlier), NOW).splitlines()
    assert lines[0].split() == ["MODEL", "DIGEST", "RESOLVED", "AT", "PROMOTED"]
    assert lines[1].split()[-1] == "2m13s"
    assert lines[2].split()[-1] == "45s"
    assert lines[3].split()[-1] == "-"
    rolling = output.history_text(mtag(served="", history=earlier), NOW).splitlines()
    assert rolling[1].split()[-1] == "rolling"
    bare = output.history_text(mtag(history=earlier), NOW, no_headers=True).splitlines()
    assert bare[0].split()[-1] == "2m13s"
    rows = output.history_rows(mtag(history=earlier))
    assert [r["servedAt"] for r in rows] == [SERVED, "2024-06-01T00:00:45Z", ""]
