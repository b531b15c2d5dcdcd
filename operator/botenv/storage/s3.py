"""Amazon S3 and S3-compatible stores (MinIO, Ceph, R2, ...) through boto3."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import boto3.exceptions
import botocore.exceptions
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from s3transfer.utils import ChunksizeAdjuster

from botenv.storage.base import (
    CHUNK,
    AccessDenied,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    check_stored,
    hash_file,
    read_back_md5,
)

DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
# Total attempts, first included: a dead endpoint fails after ~2 connect timeouts, not minutes.
MAX_ATTEMPTS = 2
# put(): files up to this size go up in one PUT, so their ETag is their MD5 (S3 takes up
# to 5 GiB in one PUT; a failed part costs less to resend than a failed 5 GiB request).
# Larger files go in parts of PART_SIZE (grown by s3transfer past 10,000 parts), their
# ETag is MD5(part MD5s)-N, checked part by part.
SINGLE_PART_MAX = 512 * CHUNK
PART_SIZE = 64 * CHUNK
UPLOAD_CONCURRENCY = 4  # parts in flight: memory and connections stay bounded

_MD5 = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-[0-9]+$")
_NOT_FOUND = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
_DENIED = {
    "401",
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "TokenRefreshRequired",
}
# What can break a body mid-stream: the connection, not the request (that already passed).
_STREAM_ERRORS = (botocore.exceptions.BotoCoreError, urllib3.exceptions.HTTPError, OSError)


class S3Storage:
    """One bucket. Keys are full object keys (prefix included, see factory.key_for)."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str = "",
        region: str = "",
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        creds = credentials or {}
        kwargs: dict[str, Any] = {}
        if creds.get("AWS_ACCESS_KEY_ID") and creds.get("AWS_SECRET_ACCESS_KEY"):
            kwargs["aws_access_key_id"] = creds["AWS_ACCESS_KEY_ID"]
            kwargs["aws_secret_access_key"] = creds["AWS_SECRET_ACCESS_KEY"]
            if creds.get("AWS_SESSION_TOKEN"):
                kwargs["aws_session_token"] = creds["AWS_SESSION_TOKEN"]
        # Otherwise boto3's default chain: IRSA / pod identity, instance profile, env vars.
        config = Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            # S3-compatible stores rarely have wildcard DNS for virtual-hosted buckets.
            s3={"addressing_style": "path" if endpoint else "auto"},
            signature_version="s3v4",
        )
        # A private session: boto3's default session is shared and not thread-safe to set up.
        session = boto3.session.Session()
        self._client = session.client(
            "s3",
            endpoint_url=endpoint or None,
            region_name=region or DEFAULT_REGION,
            config=config,
            **kwargs,
        )

    def _where(self, key: str) -> str:
        at = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3 bucket {self.bucket!r}{at}, key {key!r}"

    def _error(self, key: str, exc: Exception) -> StorageError:
        where = self._where(key)
        if isinstance(exc, botocore.exceptions.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            detail = f"{code}: {err.get('Message', '')}".rstrip(": ")
            if code in _NOT_FOUND or status == 404:
                return ObjectNotFound(f"{where}: not found ({detail})")
            if code in _DENIED or status in (401, 403):
                # S3 also answers a bare 403 to HEAD for a missing key when the
                # credentials may not list the bucket: say so, it is a common puzzle.
                hint = (
                    "; without s3:ListBucket a missing key looks like this too"
                    if code == "403"
                    else ""
                )
                return AccessDenied(f"{where}: access denied ({detail}{hint})")
            return StorageUnavailable(f"{where}: store error ({detail}, HTTP {status})")
        if isinstance(
            exc,
            botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
        ):
            return AccessDenied(f"{where}: no usable credentials ({type(exc).__name__})")
        return StorageUnavailable(f"{where}: unreachable ({type(exc).__name__}: {exc})")

    def _head(self, key: str) -> dict[str, Any]:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(key, exc) from None

    def stat(self, key: str) -> ObjectInfo:
        return self._info(key, self._head(key))

    def _info(self, key: str, head: dict[str, Any]) -> ObjectInfo:
        etag = str(head.get("ETag", "")).strip('"')
        if not etag:
            raise StorageUnavailable(f"{self._where(key)}: the store returned no ETag")
        # A plain ETag is the content MD5, except for multipart uploads ("-N") and
        # SSE-KMS / SSE-C objects, whose ETag is opaque though it looks like one.
        md5 = etag if _MD5.match(etag) and not _encrypted(head) else None
        return ObjectInfo(key=key, digest=etag, size=int(head["ContentLength"]), md5=md5)

    def put(self, key: str, path: str) -> ObjectInfo:
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise StorageError(f"model file {path!r}: {exc.strerror}") from None
        # The part size s3transfer will use for this size (it grows it past 10,000 parts).
        part_size = (
            ChunksizeAdjuster().adjust_chunksize(PART_SIZE, size)
            if size > SINGLE_PART_MAX
            else None
        )
        local = hash_file(path, part_size)
        config = TransferConfig(
            multipart_threshold=SINGLE_PART_MAX + 1,  # multipart from this size on
            multipart_chunksize=PART_SIZE,
            max_concurrency=UPLOAD_CONCURRENCY,
            # s3transfer itself, whose part sizes the check below predicts (not the CRT's).
            preferred_transfer_client="classic",
        )
        try:
            self._client.upload_file(path, self.bucket, key, Config=config)
        except boto3.exceptions.S3UploadFailedError as exc:
            # boto3 wraps the ClientError (code, status) in a message: map the original.
            cause = exc.__cause__ or exc.__context__
            raise self._error(
                key, cause if isinstance(cause, botocore.exceptions.ClientError) else exc
            ) from None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(key, exc) from None
        head = self._head(key)
        info = self._info(key, head)
        where = self._where(key)
        if part_size is None:
            expected, form, what = local.md5, _MD5, "ETag (the MD5)"
        else:
            # A multipart ETag is MD5(the parts' raw MD5s) + "-<number of parts>".
            joined = hashlib.md5(b"".join(local.part_md5s), usedforsecurity=False)
            expected = f"{joined.hexdigest()}-{len(local.part_md5s)}"
            form, what = _MULTIPART_ETAG, f"multipart ETag (parts of {part_size} bytes)"
        if _encrypted(head) or not form.match(info.digest):
            # SSE-KMS / SSE-C, or a store whose ETags are no MD5s: read the object back.
            check_stored(
                where,
                local,
                info,
                found=read_back_md5(self, key),
                what="MD5 of the content read back",
            )
        else:
            check_stored(where, local, info, found=info.digest, expected=expected, what=what)
        return info

    def open(self, key: str) -> Iterator[bytes]:
        # The request is made here, so a missing object fails at open(), not at first read.
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(key, exc) from None
        return self._chunks(key, body)

    def _chunks(self, key: str, body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        except _STREAM_ERRORS as exc:
            raise StorageUnavailable(
                f"{self._where(key)}: download interrupted ({type(exc).__name__})"
            ) from None
        finally:
            body.close()


def _encrypted(head: dict[str, Any]) -> bool:
    return str(head.get("ServerSideEncryption", "")).startswith("aws:kms") or bool(
        head.get("SSECustomerAlgorithm")
    )
