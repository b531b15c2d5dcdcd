"""A Rasa model archive's own metadata, read without loading the model.

A Rasa 3 model is a gzip-compressed tar whose `metadata.json` names the Rasa version that
trained it (`rasa_open_source_version`; newer Rasa Pro releases write `rasa_version`). It
comes after `components/` in the archive, so it is found by streaming: the archive is
decompressed chunk by chunk and every member before it is skipped, never stored. A Rasa 2
archive has `fingerprint.json` (its `version`) instead, which Rasa 3 refuses to load.

Both the bytes read from storage and the bytes decompressed are bounded, so a huge or
malicious archive costs at most that much time; a model larger than the bound has no
known version (and so passes no version gate) rather than stalling the operator.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
import zlib
from collections.abc import Iterable, Iterator

# Defaults: a Rasa model with large language-model weights is a few hundred MB.
MAX_ARCHIVE_BYTES = 2 * 1024**3  # compressed bytes read from storage
MAX_UNPACKED_BYTES = 8 * 1024**3  # bytes decompressed
MAX_METADATA_BYTES = 64 * 1024**2  # metadata.json holds the domain: a large one is MBs

METADATA = "metadata.json"
RASA2_FINGERPRINT = "fingerprint.json"
VERSION_KEYS = ("rasa_open_source_version", "rasa_version", "rasa_pro_version")


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    rasa_version: str  # the Rasa version that trained the model
    model_id: str = ""
    trained_at: str = ""


class MetadataError(Exception):
    """The archive's metadata cannot be read: the message says why, for people."""


class TooLarge(MetadataError):
    """The bound was reached before the metadata: the model is not wrong, just unread."""


class _Gunzip(io.RawIOBase):
    """The decompressed bytes of gzip `chunks` as a read-only stream, bounded both ways.
    Concatenated gzip members are read one after another, as gzip itself does."""

    def __init__(self, chunks: Iterator[bytes], max_archive: int, max_unpacked: int) -> None:
        self._chunks = chunks
        self._inflate = zlib.decompressobj(wbits=31)
        self._in_member = False  # the current decompressor has been given data
        self._out_buffer = b""
        self.read_in = 0  # compressed bytes taken from `chunks`
        self.unpacked = 0
        self._max_archive, self._max_unpacked = max_archive, max_unpacked

    def readable(self) -> bool:
        return True

    def _inflated(self) -> bytes:
        """The next decompressed bytes; b"" at the clean end of the input."""
        while True:
            if self._inflate.eof:
                rest = self._inflate.unused_data
                self._inflate, self._in_member = zlib.decompressobj(wbits=31), False
                data = rest
            else:
                data = b""
            if not data:
                chunk = next(self._chunks, None)
                if chunk is None:
                    if self._in_member:
                        raise MetadataError(
                            f"the archive is truncated: its compressed data ends after "
                            f"{self.read_in} bytes, inside the compressed stream"
                        )
                    return b""
                self.read_in += len(chunk)
                if self.read_in > self._max_archive:
                    raise TooLarge(
                        f"no {METADATA} in the first {self._max_archive} bytes of the archive"
                    )
                data = chunk
            try:
                out = self._inflate.decompress(data)
            except zlib.error as exc:
                if not self.unpacked:
                    raise MetadataError("not a gzip-compressed archive") from None
                raise MetadataError(f"the archive's compressed data is corrupt ({exc})") from None
            self._in_member = True
            if out:
                self.unpacked += len(out)
                if self.unpacked > self._max_unpacked:
                    raise TooLarge(
                        f"no {METADATA} in the first {self._max_unpacked} unpacked bytes"
                    )
                return out

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._out_buffer:
            self._out_buffer = self._inflated()
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._out_buffer))
        view[:n] = self._out_buffer[:n]
        self._out_buffer = self._out_buffer[n:]
        return n


def read_metadata(
    chunks: Iterable[bytes],
    *,
    max_archive_bytes: int = MAX_ARCHIVE_BYTES,
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES,
) -> ModelMetadata:
    """The metadata of the model archive whose bytes `chunks` yields (closed afterwards:
    the rest of the archive is not downloaded). MetadataError says why it cannot be read;
    TooLarge when a bound was reached first. Storage errors from `chunks` pass through."""
    iterator = iter(chunks)
    try:
        return _read(iterator, max_archive_bytes, max_unpacked_bytes)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _read(chunks: Iterator[bytes], max_archive: int, max_unpacked: int) -> ModelMetadata:
    raw = _Gunzip(chunks, max_archive, max_unpacked)
    stream = io.BufferedReader(raw, buffer_size=1024 * 1024)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                name = member.name.lstrip("./") if member.name not in (".", "/") else ""
                if name not in (METADATA, RASA2_FINGERPRINT) or not member.isfile():
                    continue
                if member.size > MAX_METADATA_BYTES:
                    raise MetadataError(
                        f"{name} is {member.size} bytes, more than the {MAX_METADATA_BYTES} "
                        "read at most"
                    )
                extracted = archive.extractfile(member)
                assert extracted is not None  # a regular file
                data = extracted.read()
                if len(data) < member.size:
                    raise MetadataError(f"the archive is truncated inside {name}")
                return _parse(name, data)
    except tarfile.ReadError as exc:
        if raw.read_in == 0:
            raise MetadataError("the archive is empty") from None
        text = str(exc)
        if "unexpected end" in text or "truncated" in text:
            raise MetadataError(f"the archive is truncated: it ends before {METADATA}") from None
        raise MetadataError(f"not a tar archive inside the gzip compression ({text})") from None
    except (EOFError, tarfile.StreamError) as exc:
        raise MetadataError(
            f"the archive is truncated: it ends before {METADATA} ({exc})"
        ) from None
    raise MetadataError(f"the archive holds no {METADATA}: not a model trained by Rasa 3")


def _parse(name: str, data: bytes) -> ModelMetadata:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise MetadataError(f"{name} in the archive is not JSON") from None
    if not isinstance(document, dict):
        raise MetadataError(f"{name} in the archive is not a JSON object")
    keys = ("version",) if name == RASA2_FINGERPRINT else VERSION_KEYS
    version = next((document[k] for k in keys if isinstance(document.get(k), str)), "")
    if not version.strip():
        raise MetadataError(f"{name} in the archive names no Rasa version ({', '.join(keys)})")
    return ModelMetadata(
        rasa_version=version.strip(),
        model_id=str(document.get("model_id") or ""),
        trained_at=str(document.get("trained_at") or ""),
    )
