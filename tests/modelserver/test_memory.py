"""Memory stays flat in model size: a 1 GB model through a model server in its own process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

pytestmark = [pytest.mark.modelserver, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SIZE = 1 << 30
LIMIT_MB = 150  # the acceptance figure
TOKEN = "memory-test-token"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise AssertionError("no VmHWM in /proc status")


async def pull(port: int) -> int:
    """GET the model, reading and discarding it; returns the byte count."""
    url = f"http://127.0.0.1:{port}/models/bots/tags/production"
    timeout = aiohttp.ClientTimeout(total=240)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200, await resp.text()
            assert int(resp.headers["Content-Length"]) == SIZE
            received = 0
            async for chunk in resp.content.iter_chunked(1 << 20):
                received += len(chunk)
            return received


@pytest.mark.timeout(600)
def test_streaming_a_1gb_model_keeps_server_rss_under_150mb(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    with (models / "big.tar.gz").open("wb") as f:
        f.truncate(SIZE)  # sparse: zeros without writing them
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.modelserver.serve_dir",
            str(models),
            "big.tar.gz",
            str(tmp_path / "cache"),
            "--answer-within",
            "300",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BOTENV_PULL_TOKEN": TOKEN},
    )
    try:
        line = proc.stdout.readline()  # after the start-up MD5 of the model
        assert line.startswith("PORT "), f"server did not start: {line!r}"
        port = int(line.split()[1])
        baseline = peak_rss_mb(proc.pid)

        started = time.monotonic()
        assert asyncio.run(pull(port)) == SIZE  # cache miss: storage -> disk -> client
        filled = time.monotonic() - started
        assert asyncio.run(pull(port)) == SIZE  # cache hit: sendfile from disk
        served = time.monotonic() - started - filled

        peak = peak_rss_mb(proc.pid)
        print(
            f"\nmodel server peak RSS (VmHWM): {peak:.1f} MB after streaming 1 GiB twice "
            f"(at start-up {baseline:.1f} MB; fill+send {filled:.1f} s, send {served:.1f} s)"
        )
        assert peak < LIMIT_MB
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == 0  # SIGTERM is a clean stop
