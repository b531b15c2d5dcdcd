"""`botenv fetch-project`: the first step of a training Job whose source is an archive in
storage. It downloads the .tar.gz with the storage backends the model server uses and
unpacks it as a Rasa project (config.yml, domain.yml, data/) into a directory.

The archive is untrusted. Its whole member list is read and checked before anything is
written: only regular files and directories, plain relative names that stay inside the
target, no entry twice, and caps on the unpacked bytes, the number of entries and the
expansion ratio. The files are then written by this module itself (never by tarfile's
extract), each to a path it computed, with the project's top folder already stripped."""

from __future__ import annotations

import argparse
import bz2
import dataclasses
import gzip
import json
import lzma
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from botenv.cli.shared import EXIT_FAILED, EXIT_OK, StepError, print_error, read_secret_dir

DEFAULT_SECRET_DIR = "/var/run/secrets/botenv/source"

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
DEFAULT_MAX_BYTES = 256 * MiB
DEFAULT_MAX_FILES = 10_000
DEFAULT_MAX_RATIO = 100.0
# Below this many unpacked bytes the ratio is not checked: small text archives pack well
# and cannot hurt.
RATIO_FLOOR = 1 * MiB
# The longest single read while walking the member list: a tar header, a pax header or a
# GNU long name. A longer one is a memory bomb, not a project.
MAX_HEADER = 1 * MiB
# Room for headers in the tar stream, per entry, on top of the file bytes.
HEADER_ROOM = 4 * KiB
MAX_NAME, MAX_COMPONENT, MAX_DEPTH = 1024, 255, 32
CHUNK = 256 * KiB
FILE_MODE, DIR_MODE = 0o644, 0o755

ONLY_FILES = "a Rasa project needs only regular files and directories"
PAX_KEYS = frozenset(
    {
        "path",
        "size",
        "mtime",
        "atime",
        "ctime",
        "uid",
        "gid",
        "uname",
        "gname",
        "comment",
        "charset",
        "hdrcharset",
    }
)
# Extended attributes and file flags that GNU tar and bsdtar record; never applied here.
PAX_PREFIXES = ("SCHILY.", "LIBARCHIVE.")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SIZE = re.compile(r"^(\d+)(Ki|Mi|Gi)?$")
_UNITS = {None: 1, "Ki": KiB, "Mi": MiB, "Gi": GiB}


class FetchError(StepError):
    """A failure to report as `error: ...` with exit code 1."""


class LimitExceeded(Exception):
    """The tar stream went past a cap of Bounded (kind: 'header' or 'stream')."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES  # unpacked file bytes (and the download itself)
    max_files: int = DEFAULT_MAX_FILES  # entries: files and directories
    max_ratio: float = DEFAULT_MAX_RATIO  # unpacked bytes / archive bytes

    @classmethod
    def resolve(
        cls,
        max_bytes: str | None = None,
        max_files: str | None = None,
        max_ratio: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Limits:
        """The CLI's values, else BOTENV_FETCH_MAX_* from the environment, else defaults."""
        env = os.environ if environ is None else environ

        def pick(value: str | None, name: str) -> str | None:
            if value is not None:
                return value
            return env.get(f"BOTENV_FETCH_{name}", "").strip() or None

        raw_bytes, raw_files, raw_ratio = (
            pick(max_bytes, "MAX_BYTES"),
            pick(max_files, "MAX_FILES"),
            pick(max_ratio, "MAX_RATIO"),
        )
        try:
            limits = cls(
                max_bytes=DEFAULT_MAX_BYTES if raw_bytes is None else parse_size(raw_bytes),
                max_files=DEFAULT_MAX_FILES if raw_files is None else int(raw_files),
                max_ratio=DEFAULT_MAX_RATIO if raw_ratio is None else float(raw_ratio),
            )
        except ValueError as exc:
            raise FetchError(
                f"invalid limit (--max-bytes, --max-files, --max-ratio or "
                f"BOTENV_FETCH_MAX_*): {exc}"
            ) from None
        if limits.max_bytes <= 0 or limits.max_files <= 0 or not limits.max_ratio > 0:
            raise FetchError(
                "invalid limit (--max-bytes, --max-files, --max-ratio or "
                "BOTENV_FETCH_MAX_*): limits must be positive"
            )
        return limits


def parse_size(text: str) -> int:
    """Bytes, or a number with Ki, Mi or Gi."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"expected bytes such as 268435456 or 256Mi, got {text!r}")
    return int(match[1]) * _UNITS[match[2]]


class Bounded:
    """A read-only view of a (decompressed) stream that never goes past `cap` bytes and
    never reads more than `max_read` bytes at once. Seeking forward (how tarfile skips a
    member's data) counts as much as reading, so a decompression bomb stops at the cap."""

    def __init__(self, inner: BinaryIO, cap: int, max_read: int) -> None:
        self.inner, self.cap, self.max_read, self.pos = inner, cap, max_read, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self.max_read:
            raise LimitExceeded("header", f"a tar header larger than {self.max_read} bytes")
        allowed = self.cap - self.pos
        if n > allowed:
            data = self.inner.read(allowed)
            if len(data) == allowed and self.inner.read(1):
                raise LimitExceeded("stream", f"the tar stream goes past {self.cap} bytes")
        else:
            data = self.inner.read(n)
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = {os.SEEK_SET: offset, os.SEEK_CUR: self.pos + offset}.get(whence)
        if target is None or target < 0:
            raise OSError("unsupported seek in a tar stream")
        if target > self.cap:
            raise LimitExceeded("stream", f"the tar stream goes past {self.cap} bytes")
        self.pos = self.inner.seek(target)
        return self.pos

    def tell(self) -> int:
        return self.pos


@dataclasses.dataclass
class _Plan:
    dirs: list[tuple[str, ...]]  # to create, parents first
    files: list[tuple[tarfile.TarInfo, tuple[str, ...]]]  # in archive order


def _decompressed(raw: BinaryIO) -> BinaryIO:
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw


def _kind(m: tarfile.TarInfo) -> str | None:
    """What makes a member unacceptable, or None for a regular file or directory."""
    if m.issparse():
        return "a sparse file"
    if m.issym():
        return "a symbolic link"
    if m.islnk():
        return "a hard link"
    if m.ischr():
        return "a character device"
    if m.isblk():
        return "a block device"
    if m.isfifo():
        return "a FIFO"
    if m.isreg() or m.isdir():
        return None
    return f"of tar type {m.type!r}"


def _parts(name: str) -> tuple[str, ...]:
    """The normalised components of a member name; raises FetchError for unsafe names."""

    def refuse(why: str) -> FetchError:
        return FetchError(
            f"member {name!r} {why}: names must be plain relative paths inside the project"
        )

    if _CONTROL.search(name):
        raise refuse("has a NUL or control character")
    if "\\" in name:
        raise refuse("has a backslash")
    if name.startswith("/"):
        raise refuse("is an absolute path")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise refuse("is not valid UTF-8") from None
    if len(encoded) > MAX_NAME:
        raise refuse(f"is longer than {MAX_NAME} bytes")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise refuse("has a '..' component")
    if any(len(p.encode("utf-8")) > MAX_COMPONENT for p in parts):
        raise refuse(f"has a component longer than {MAX_COMPONENT} bytes")
    if len(parts) > MAX_DEPTH:
        raise refuse(f"is nested deeper than {MAX_DEPTH} folders")
    return parts


def _check_pax(m: tarfile.TarInfo) -> None:
    for key in m.pax_headers:
        if key not in PAX_KEYS and not key.startswith(PAX_PREFIXES):
            raise FetchError(
                f"member {m.name!r} has the pax header {key!r}: {ONLY_FILES}, "
                "without links, sparse data or other extensions"
            )


def _read_plan(tar: tarfile.TarFile, limits: Limits, compressed: int) -> _Plan:
    """Walk the whole member list (headers only) and check it; nothing is written."""
    members: list[tuple[tarfile.TarInfo, tuple[str, ...]]] = []
    count = total = 0
    last: str | None = None
    while True:
        try:
            m = tar.next()
        except LimitExceeded as exc:
            where = f"after member {last!r}" if last is not None else "at its start"
            limit = (
                f"headers are limited to {MAX_HEADER} bytes"
                if exc.kind == "header"
                else f"above the limit of {limits.max_bytes} bytes plus headers "
                "(--max-bytes, BOTENV_FETCH_MAX_BYTES)"
            )
            raise FetchError(f"the archive has {exc} {where}: {limit}") from None
        if m is None:
            break
        count += 1
        if count > limits.max_files:
            raise FetchError(
                f"member {m.name!r} is entry {count}: above the limit of "
                f"{limits.max_files} files and directories (--max-files, "
                "BOTENV_FETCH_MAX_FILES)"
            )
        kind = _kind(m)
        if kind is not None:
            raise FetchError(f"member {m.name!r} is {kind}: {ONLY_FILES}")
        parts = _parts(m.name)
        _check_pax(m)
        m.pax_headers = {}  # checked and applied; big values would only hold memory
        if m.isreg():
            if not parts:
                raise FetchError(f"member {m.name!r} is a file without a name")
            total += m.size
            if total > limits.max_bytes:
                raise FetchError(
                    f"member {m.name!r} brings the unpacked size to {total} "
                    f"bytes: above the limit of {limits.max_bytes} bytes "
                    "(--max-bytes, BOTENV_FETCH_MAX_BYTES)"
                )
            if total > RATIO_FLOOR and total > limits.max_ratio * max(compressed, 1):
                raise FetchError(
                    f"member {m.name!r} brings the unpacked size to {total} "
                    f"bytes, {total / max(compressed, 1):.0f} times the "
                    f"archive's {compressed} bytes: above the limit of "
                    f"{limits.max_ratio:g} (--max-ratio, BOTENV_FETCH_MAX_RATIO)"
                )
        last = m.name
        if parts:  # "./" is the target itself
            members.append((m, parts))
    return _layout(members)


def _layout(members: list[tuple[tarfile.TarInfo, tuple[str, ...]]]) -> _Plan:
    """Where each member goes: the project root is the archive's top, or its single
    top-level folder (hidden entries beside that folder, such as macOS metadata, are left
    out), decided from the names alone. Refuses duplicates and file/folder clashes."""
    is_file = {parts: m.isreg() for m, parts in members}
    tops = {parts[0] for parts in is_file if not parts[0].startswith(".")}
    lift = (
        not is_file.get(("config.yml",), False)
        and len(tops) == 1
        and not is_file.get((next(iter(tops)),), False)
    )
    if lift:
        top = next(iter(tops))
        members = [(m, parts[1:]) for m, parts in members if parts[0] == top and parts[1:]]
    files: dict[tuple[str, ...], str] = {}
    dirs: dict[tuple[str, ...], str] = {}
    plan = _Plan(dirs=[], files=[])
    for m, path in members:
        shown = "/".join(path)
        if path in files or (m.isreg() and path in dirs):
            raise FetchError(
                f"member {m.name!r} is a second entry for {shown!r}: it would overwrite the first"
            )
        for depth in range(1, len(path)):
            parent = path[:depth]
            if parent in files:
                raise FetchError(
                    f"member {m.name!r} needs {'/'.join(parent)!r} to be a "
                    "directory, but the archive has it as a file"
                )
            dirs.setdefault(parent, m.name)
        if m.isreg():
            files[path] = m.name
            plan.files.append((m, path))
        else:
            dirs.setdefault(path, m.name)
    root = "its single top-level folder" if lift else "its top level"
    missing = [n for n in ("config.yml", "domain.yml") if (n,) not in files]
    if ("data",) not in dirs:
        missing.append("data/")
    if missing:
        raise FetchError(f"the archive is not a Rasa project: no {', '.join(missing)} at {root}")
    plan.dirs = sorted(dirs, key=lambda p: (len(p), p))
    return plan


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(root_fd: int, parts: tuple[str, ...]) -> int:
    """A descriptor of root/parts, walked one directory at a time without following links."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write(tar: tarfile.TarFile, plan: _Plan, into: Path, limits: Limits) -> None:
    root_fd = os.open(into, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in plan.dirs:
            parent = _open_dir(root_fd, path[:-1])
            try:
                os.mkdir(path[-1], 0o700, dir_fd=parent)
                fd = os.open(path[-1], _DIR_FLAGS, dir_fd=parent)
                try:
                    os.fchmod(fd, DIR_MODE)
                finally:
                    os.close(fd)
            finally:
                os.close(parent)
        total = 0
        for m, path in plan.files:
            source = tar.extractfile(m)
            if source is None:
                raise FetchError(f"member {m.name!r} has no data")
            parent = _open_dir(root_fd, path[:-1])
            try:
                fd = os.open(path[-1], _FILE_FLAGS, 0o600, dir_fd=parent)
            finally:
                os.close(parent)
            written = 0
            with source, open(fd, "wb", closefd=True) as out:
                while chunk := source.read(CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    if written > m.size or total > limits.max_bytes:
                        raise FetchError(f"member {m.name!r} holds more data than its header says")
                    out.write(chunk)
                os.fchmod(out.fileno(), FILE_MODE)
            if written != m.size:
                raise FetchError(f"member {m.name!r} is cut short: {written} of {m.size} bytes")
    finally:
        os.close(root_fd)


def _empty(into: Path) -> None:
    for child in list(into.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def unpack(archive: Path, into: Path, limits: Limits | None = None) -> Path:
    """Check the whole archive, then unpack it into `into` (absent or empty) and return
    `into`, the project root: a project wrapped in one top-level folder is written without
    that folder. Raises FetchError, leaving `into` as it was, for anything unsafe."""
    limits = limits or Limits()
    if into.is_symlink() or (into.exists() and not into.is_dir()):
        raise FetchError(f"the target {into} is not a directory")
    if into.is_dir() and any(into.iterdir()):
        raise FetchError(f"the target directory {into} is not empty")
    compressed = archive.stat().st_size
    try:
        with open(archive, "rb") as raw, _decompressed(raw) as stream:
            cap = limits.max_bytes + (limits.max_files + 4) * HEADER_ROOM
            bounded = Bounded(stream, cap=cap, max_read=MAX_HEADER)
            try:
                tar = tarfile.TarFile(fileobj=bounded, mode="r")  # type: ignore[arg-type]
            except LimitExceeded as exc:
                raise FetchError(f"the archive has {exc} at its start") from None
            with tar:
                plan = _read_plan(tar, limits, compressed)
                created = not into.exists()
                into.mkdir(parents=True, exist_ok=True)
                try:
                    _write(tar, plan, into, limits)
                except BaseException:
                    _empty(into)
                    if created:
                        into.rmdir()
                    raise
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, LimitExceeded) as exc:
        raise FetchError(f"cannot unpack the archive: {exc}") from None
    return into


def fetch(
    storage_json: str,
    obj: str,
    into: Path,
    credentials: Mapping[str, str],
    limits: Limits | None = None,
) -> Path:
    from botenv.api import SpecError, parse_tag
    from botenv.storage import StorageError
    from botenv.storage.factory import key_for, storage_for
    from botenv.storage.policy import UNRESTRICTED

    limits = limits or Limits()
    try:
        storage = json.loads(storage_json)
        spec = parse_tag({"spec": {"model": obj, "storage": storage}}).storage
    except (ValueError, SpecError) as exc:
        raise FetchError(f"invalid --storage-json or --object: {exc}") from None
    key = key_for(spec, obj)
    into.parent.mkdir(parents=True, exist_ok=True)
    # In $TMPDIR (/tmp, a volume in the Job): the root filesystem around `into` is read-only.
    with tempfile.NamedTemporaryFile(suffix=".tar.gz") as tmp:
        size = 0
        try:
            # UNRESTRICTED: this runs in the tenant's own Job pod, with the tenant's identity.
            for chunk in storage_for(spec, credentials, policy=UNRESTRICTED).open(key):
                size += len(chunk)
                if size > limits.max_bytes:
                    raise FetchError(
                        f"the archive {key} is larger than the limit of "
                        f"{limits.max_bytes} bytes (--max-bytes, "
                        "BOTENV_FETCH_MAX_BYTES)"
                    )
                tmp.write(chunk)
        except StorageError as exc:
            raise FetchError(str(exc)) from None
        tmp.flush()
        print(
            f"botenv fetch-project: {key} ({size} bytes) from {spec.provider}",
            file=sys.stderr,
            flush=True,
        )
        return unpack(Path(tmp.name), into, limits)


def add_fetch_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fetch-project",
        help="download and unpack a Rasa project archive (a training Job's first step)",
    )
    p.add_argument(
        "--storage-json",
        required=True,
        metavar="JSON",
        help="the storage block of the archive, as in a ModelTag",
    )
    p.add_argument("--object", required=True, help="the archive's name in that storage")
    p.add_argument(
        "--into", required=True, help="the directory to unpack the project into (absent or empty)"
    )
    p.add_argument(
        "--secret-dir",
        default=None,
        metavar="DIR",
        help=f"a mounted Secret with the storage credentials (default: "
        f"{DEFAULT_SECRET_DIR} when it exists)",
    )
    p.add_argument(
        "--max-bytes",
        default=None,
        metavar="SIZE",
        help="cap on the unpacked bytes, and on the archive itself, as bytes or "
        "with Ki/Mi/Gi (default: $BOTENV_FETCH_MAX_BYTES, else 256Mi)",
    )
    p.add_argument(
        "--max-files",
        default=None,
        metavar="N",
        help="cap on the files and directories in the archive (default: "
        f"$BOTENV_FETCH_MAX_FILES, else {DEFAULT_MAX_FILES})",
    )
    p.add_argument(
        "--max-ratio",
        default=None,
        metavar="R",
        help="cap on unpacked bytes / archive bytes, checked above "
        f"{RATIO_FLOOR // MiB} MiB (default: $BOTENV_FETCH_MAX_RATIO, else "
        f"{DEFAULT_MAX_RATIO:g})",
    )
    p.set_defaults(func=cmd_fetch)


def cmd_fetch(args: argparse.Namespace) -> int:
    credentials: Mapping[str, str] = {}
    try:
        limits = Limits.resolve(args.max_bytes, args.max_files, args.max_ratio)
        secret_dir = args.secret_dir
        if secret_dir is None and os.path.isdir(DEFAULT_SECRET_DIR):
            secret_dir = DEFAULT_SECRET_DIR
        credentials = read_secret_dir(secret_dir) if secret_dir else {}
        fetch(args.storage_json, args.object, Path(args.into), credentials, limits)
    except StepError as exc:
        print_error(str(exc), credentials)
        return EXIT_FAILED
    return EXIT_OK
