"""Rasa's revalidation answered on arrival, before aiohttp builds a request for it.

Every Rasa pod asks its model server "still the same model?" every pull interval, and almost
every answer is 304. aiohttp spends about 30 µs of its own per request (a request object,
header multidicts, a response object, its writer); this path answers that one request shape
in a few, from the bytes as they arrive.

It takes only what it fully understands and gives everything else to aiohttp unchanged:

- one complete request head, alone in the bytes received, on a connection whose every
  earlier byte was answered here too (so no answer of aiohttp's can be overtaken, and its
  parser holds no half-parsed request); the first bytes that are not give the rest of the
  connection to aiohttp (botenv.modelserver.connections);
- `GET /models/<namespace>/tags/<tag> HTTP/1.1`: no query string, no escapes, names as
  Kubernetes allows them;
- printable ASCII headers with token names, each of `Authorization` (Bearer) and
  `If-None-Match` exactly once, and none that frames a body or changes the connection
  (Content-Length, Transfer-Encoding, Expect, Upgrade, Connection);
- and only when the answer is 304: the token is granted this tag and the ETag is the
  model it would be served. Any other answer (200, 401, 404, 503) is aiohttp's.

The answer's bytes are aiohttp's own for the same request (tests/modelserver/
test_revalidation.py compares them); the app's handler keeps the one definition of
"granted" and "not modified" (`_Handlers.not_modified`).
"""

from __future__ import annotations

import dataclasses
import email.utils
import re
import time
from collections.abc import Callable

from aiohttp.http import SERVER_SOFTWARE

# A Kubernetes namespace (DNS label) and a ModelTag name (DNS subdomain).
_REQUEST_LINE = re.compile(
    rb"GET /models/([a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)"
    rb"/tags/([a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?) HTTP/1\.1"
)
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x20-\x7e]*?)[ \t]*")
# Headers that frame a body or change what the connection is: aiohttp's to handle.
_NOT_HERE = frozenset(
    {b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"connection"}
)
MAX_HEAD = 8190  # aiohttp's own line limit: anything longer is its to refuse


@dataclasses.dataclass(frozen=True)
class Revalidation:
    namespace: str
    tag: str
    token: str
    if_none_match: str


def parse(data: bytes) -> Revalidation | None:
    """The revalidation `data` is, if it is exactly one of the shape above; else None."""
    if len(data) > MAX_HEAD or not data.endswith(b"\r\n\r\n"):
        return None
    lines = data[:-4].split(b"\r\n")
    if len(lines) < 3:  # request line, Authorization, If-None-Match at least
        return None
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        return None
    authorization = if_none_match = None
    for raw in lines[1:]:  # an empty line here would be a second request: no match below
        header = _HEADER.fullmatch(raw)
        if header is None:
            return None
        name = header[1].lower()
        if name in _NOT_HERE:
            return None
        if name == b"authorization":
            if authorization is not None:
                return None
            authorization = header[2]
        elif name == b"if-none-match":
            if if_none_match is not None:
                return None
            if_none_match = header[2]
    if authorization is None or not if_none_match:
        return None
    scheme, _, token = authorization.partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return None
    return Revalidation(line[1].decode(), line[2].decode(), token.decode(), if_none_match.decode())


class _Date:
    """The Date header's value, made once per second (as aiohttp does)."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, email.utils.formatdate(now, usegmt=True)
        return self._value


# (ETag, filename) of a 304 for this revalidation, or None when the answer is anything else.
NotModified = Callable[[Revalidation], "tuple[str, str] | None"]
# Called for each request answered here, with the client's address (counting and logging).
Answered = Callable[[Revalidation, str], None]
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")


class FastPath:
    """Given the bytes a connection sent, the 304 to write back, or None."""

    def __init__(self, not_modified: NotModified, answered: Answered) -> None:
        self._not_modified = not_modified
        self._answered = answered
        self._date = _Date()

    def answer(self, data: bytes, peer: str) -> bytes | None:
        request = parse(data)
        if request is None:
            return None
        headers = self._not_modified(request)
        if headers is None:
            return None
        etag, filename = headers
        if not (_HEADER_SAFE.fullmatch(etag) and _HEADER_SAFE.fullmatch(filename)):
            return None  # aiohttp's encoding and checks of header values, not a copy here
        self._answered(request, peer)
        return (
            f"HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nfilename: {filename}\r\n"
            f"Date: {self._date()}\r\nServer: {SERVER_SOFTWARE}\r\n\r\n"
        ).encode()
