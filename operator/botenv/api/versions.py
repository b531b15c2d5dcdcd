"""Rasa versions as Rasa compares them (PEP 440, as its `packaging.version` does), for
`spec.rasaVersion` and botenv's model version gate (render/compat.py)."""

from __future__ import annotations

import re

VERSION_HINT = "3.6.21"

# A version as Rasa writes it: PEP 440 release, pre-release, post and dev parts.
_VERSION = re.compile(
    r"^v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>a|b|rc|alpha|beta|c)[-_.]?(?P<pre_n>\d*))?"
    r"(?:[-_.]?(?:post|rev|r)[-_.]?(?P<post>\d*))?"
    r"(?:[-_.]?dev[-_.]?(?P<dev>\d*))?$",
    re.IGNORECASE,
)
_PRE = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2}


def version_key(version: str) -> tuple[object, ...] | None:
    """A sort key that orders versions as Rasa's `packaging.version` does, or None when
    `version` is not a version."""
    match = _VERSION.match(version.strip())
    if match is None:
        return None
    release = tuple(int(p) for p in match["release"].split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]  # 3.6 == 3.6.0
    # dev < pre-release < release < post: a missing part sorts where PEP 440 puts it.
    if match["pre"] is not None:
        pre: tuple[int, int] = (_PRE[match["pre"].lower()], int(match["pre_n"] or 0))
    elif match["dev"] is not None and match["post"] is None:
        pre = (-1, 0)
    else:
        pre = (3, 0)
    post = int(match["post"] or 0) if match["post"] is not None else -1
    dev = int(match["dev"] or 0) if match["dev"] is not None else 1 << 62
    return (release, pre, post, dev)


def is_version(version: str) -> bool:
    return version_key(version) is not None
