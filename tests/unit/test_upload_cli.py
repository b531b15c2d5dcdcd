"""`botenv upload` as a training Job runs it: a real process (`python -m botenv upload`)
storing to local storage, its one line of JSON, its exit codes, its errors, and the
credentials of a mounted Secret volume, which never show in its output."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from botenv import cli
from botenv.cli import shared
from botenv.cli.jobsteps import upload
from botenv.local.processes import free_port

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))}
    base["AWS_EC2_METADATA_DISABLED"] = "true"  # no instance metadata probe on failure
    return subprocess.run(
        [sys.executable, "-m", "botenv", "upload", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )


def main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The same command in this process (faster, for the many error cases)."""
    try:
        code = cli.main(["upload", *args])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "out" / "20240501-120000.tar.gz"
    path.parent.mkdir()
    path.write_bytes(os.urandom(2 * 1024 * 1024 + 17))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


def local_json(root: Path, **extra: str) -> str:
    return json.dumps({"provider": "local", "path": str(root), **extra})


def secret_volume(path: Path, data: dict[str, str]) -> Path:
    """A directory laid out as the kubelet mounts a Secret: keys are symlinks into ..data."""
    stamp = path / "..2024_05_01_12_00_00.000000001"
    stamp.mkdir(parents=True)
    for key, value in data.items():
        (stamp / key).write_text(value)
    (path / "..data").symlink_to(stamp.name)
    for key in data:
        (path / key).symlink_to(f"..data/{key}")
    return path


def test_upload_to_local_storage(model: Path, store: Path) -> None:
    result = run(
        str(model),
        "--storage-json",
        local_json(store, prefix="tenants/acme/"),
        "--model",
        model.name,
    )
    assert result.returncode == 0, result.stderr

    stored = store / "tenants" / "acme" / model.name
    md5 = hashlib.md5(model.read_bytes()).hexdigest()
    assert result.stdout.count("\n") == 1  # one line, and nothing else on stdout
    assert json.loads(result.stdout) == {
        "model": model.name,
        "key": str(stored),
        "digest": md5,
        "size": model.stat().st_size,
    }
    assert stored.read_bytes() == model.read_bytes()
    assert stored.stat().st_mode & 0o777 == 0o644
    # Progress on stderr: what goes where, and how fast it went.
    assert f"uploading {model}" in result.stderr
    assert "MB/s" in result.stderr and "verified" in result.stderr


def test_usage_errors_exit_2(model: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_model = run(str(model), "--storage-json", local_json(store))
    assert no_model.returncode == 2
    assert "--model" in no_model.stderr
    assert main(capsys, "--model", "m.tar.gz", "--storage-json", local_json(store))[0] == 2
    assert main(capsys, str(model), "--model", "m.tar.gz")[0] == 2
    assert main(capsys, str(model), "--model", "m", "--storage-json", "{}", "--bogus")[0] == 2


@pytest.mark.parametrize(
    ("storage", "names"),
    [
        ("not json", ["--storage-json is not JSON"]),
        ('["s3"]', ["must be a JSON object"]),
        ('{"bucket": "b"}', ["storage.provider", "is required"]),
        ('{"provider": "s3"}', ["storage.bucket", "is required for provider s3"]),
        ('{"provider": "ftp"}', ["storage.provider", "must be one of"]),
        ('{"provider": "local", "path": "relative/dir"}', ["storage.path", "absolute"]),
        ('{"provider": "local", "path": 5}', ["storage.path", "must be a string"]),
        ('{"provider": "s3", "bucket": "b", "endpoint": "ftp://x"}', ["storage.endpoint"]),
    ],
)
def test_bad_storage_json_names_the_field(
    model: Path, storage: str, names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = main(capsys, str(model), "--storage-json", storage, "--model", model.name)
    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    for name in names:
        assert name in err


def test_bad_storage_json_in_a_process(model: Path) -> None:
    result = run(
        str(model), "--storage-json", '{"provider": "s3", "prefix": "p/"}', "--model", model.name
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: invalid storage or model: --storage-json storage.bucket: is required for "
        "provider s3 (the bucket, or the Azure container)\n"
    )


def test_bad_model_name(model: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = main(
        capsys, str(model), "--storage-json", local_json(store), "--model", "../escape.tar.gz"
    )
    assert code == 1
    assert "--model: must be an object name" in err
    assert list(store.parent.glob("escape*")) == []


def test_missing_file(tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = main(
        capsys,
        str(tmp_path / "none.tar.gz"),
        "--storage-json",
        local_json(store),
        "--model",
        "m.tar.gz",
    )
    assert (code, out) == (1, "")
    assert "none.tar.gz: no such file" in err


def test_http_is_read_only(model: Path) -> None:
    result = run(
        str(model),
        "--storage-json",
        '{"provider": "http", "url": "https://h/m"}',
        "--model",
        model.name,
    )
    assert result.returncode == 1
    assert "error: storage provider http is read-only: use s3, gcs, azure or local" in result.stderr


def test_local_store_not_mounted(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = main(
        capsys, str(model), "--storage-json", local_json(tmp_path / "absent"), "--model", model.name
    )
    assert code == 1
    assert "the directory is not there" in err


@pytest.mark.parametrize(
    ("storage", "data"),
    [
        # A store that is not there: boto3's own errors, retries and all.
        (
            {"provider": "s3", "bucket": "models", "endpoint": "http://127.0.0.1:{port}"},
            {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": SECRET},
        ),
        # Credentials refused before any request.
        (
            {"provider": "azure", "bucket": "models", "endpoint": "http://127.0.0.1:{port}/acct"},
            {"AZURE_ACCOUNT_NAME": "acct", "AZURE_ACCOUNT_KEY": SECRET + "!"},
        ),
        (
            {"provider": "gcs", "bucket": "models"},
            {"credentials.json": json.dumps({"type": "service_account", "private_key": SECRET})},
        ),
        # A value that a message would carry (here it is also the bucket's name).
        (
            {
                "provider": "s3",
                "bucket": SECRET.lower()[:40].replace("_", "-"),
                "endpoint": "http://127.0.0.1:{port}",
            },
            {
                "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
                "AWS_SECRET_ACCESS_KEY": SECRET,
                "BUCKET_TOO": SECRET.lower()[:40].replace("_", "-"),
            },
        ),
    ],
    ids=["s3-unreachable", "azure-bad-key", "gcs-bad-key", "echoed"],
)
def test_secret_values_never_in_the_output(
    model: Path, tmp_path: Path, storage: dict[str, str], data: dict[str, str]
) -> None:
    port = free_port()  # nothing listens there
    storage = {k: v.format(port=port) for k, v in storage.items()}
    secrets = secret_volume(tmp_path / "secret", data)
    result = run(
        str(model),
        "--storage-json",
        json.dumps(storage),
        "--model",
        model.name,
        "--secret-dir",
        str(secrets),
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: ")
    output = result.stdout + result.stderr
    for name, value in data.items():
        if name not in shared.PUBLIC_KEYS:  # an account name is in every endpoint URL
            assert value not in output
    assert SECRET not in output
    assert SECRET.lower()[:40].replace("_", "-") not in output


def test_absent_secret_dir_means_no_credentials(
    model: Path, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The training Job passes --secret-dir whether or not it mounts a Secret there.
    code, out, err = main(
        capsys,
        str(model),
        "--storage-json",
        local_json(store),
        "--model",
        model.name,
        "--secret-dir",
        str(tmp_path / "nope"),
    )
    assert code == 0
    assert json.loads(out)["size"] == model.stat().st_size
    assert "no Secret at --secret-dir" in err


# -- the Secret volume, read as the model server reads a Secret -------------------------------


def test_secret_dir_is_the_credentials_mapping(tmp_path: Path) -> None:
    secrets = secret_volume(
        tmp_path / "s",
        {
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "line\n",  # as stored: the model server strips nothing
            "credentials.json": '{"type": "service_account"}',
        },
    )
    assert upload.read_secret_dir(str(secrets)) == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "line\n",
        "credentials.json": '{"type": "service_account"}',
    }


def test_default_secret_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload, "DEFAULT_SECRET_DIR", str(tmp_path / "absent"))
    assert upload.read_secret_dir(None) == {}  # none mounted: no credentials
    secret_volume(tmp_path / "absent", {"token": "t0k3n"})
    assert upload.read_secret_dir(None) == {"token": "t0k3n"}


def test_secret_dir_hands_the_credentials_to_storage_for(
    model: Path,
    store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from botenv.storage import factory

    seen = []
    real = factory.storage_for
    monkeypatch.setattr(
        factory,
        "storage_for",
        lambda spec, creds, policy: (
            seen.append((spec.provider, dict(creds))) or real(spec, creds, policy=policy)
        ),
    )
    secrets = secret_volume(tmp_path / "s", {"token": "t0k3n"})
    code = cli.main(
        [
            "upload",
            str(model),
            "--storage-json",
            local_json(store),
            "--model",
            model.name,
            "--secret-dir",
            str(secrets),
        ]
    )
    assert code == 0
    assert seen == [("local", {"token": "t0k3n"})]
    assert json.loads(capsys.readouterr().out)["key"] == str(store / model.name)
