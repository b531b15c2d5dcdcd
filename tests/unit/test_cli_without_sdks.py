"""The people's CLI installs without the `server` extra: importing its commands, or running
`botenv status --help`, loads none of the cloud storage SDKs (boto3, google-cloud-storage,
azure-storage-blob). Only the storage backends import them, lazily, when a tag names that
provider."""

from __future__ import annotations

import json
import subprocess
import sys

SDKS = ("boto3", "botocore", "google.cloud", "azure")

REPORT = (
    "import json, sys; "
    f"sdks = {SDKS!r}; "
    "print(json.dumps(sorted(m for m in sys.modules "
    "if any(m == s or m.startswith(s + '.') for s in sdks))))"
)


def loaded_sdks(code: str) -> list[str]:
    """The SDK modules in sys.modules after `code` ran in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{REPORT}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_people_commands_loads_no_cloud_sdk() -> None:
    assert loaded_sdks("import botenv.cli.people, botenv.cli.train") == []


def test_the_command_line_parser_loads_no_cloud_sdk() -> None:
    code = (
        "import contextlib, io\n"
        "from botenv.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['status', '--help'])"
    )
    assert loaded_sdks(code) == []


def test_the_report_sees_an_sdk_when_one_is_imported() -> None:
    """The check itself works: a storage backend does load its SDK."""
    assert "boto3" in loaded_sdks("import botenv.storage.s3")


def test_a_storage_command_without_the_sdks_names_the_extra_to_install() -> None:
    """Without `botenv[server]`, a storage step fails with one clear error, not a traceback."""
    blocked = ", ".join(f"{name!r}: None" for name in ("boto3", "botocore"))
    code = (
        f"import sys; sys.modules.update({{{blocked}}})\n"
        "from botenv.api.tag import StorageSpec\n"
        "from botenv.storage import StorageError\n"
        "from botenv.storage.factory import storage_for\n"
        "from botenv.storage.policy import UNRESTRICTED\n"
        "try:\n"
        "    storage_for(StorageSpec(provider='s3', bucket='b'), {}, policy=UNRESTRICTED)\n"
        "except StorageError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "storage provider s3 needs botenv[server]" in done.stdout, done.stdout + done.stderr
    assert "pip install 'botenv[server]'" in done.stdout
