"""The first run, as the README tells a new user: `scripts/run` with no cluster starts the
local control plane, the local node, the model server and the operator; botenv trains the
demo bot (examples/demo-bot) with two ModelTrainings and two environments get Ready with
real Rasa. Then, as a person in another terminal: `botenv chat` to each, `botenv promote
production --from experimental --wait`, `botenv chat` again; then Ctrl-C, and nothing that
run started is left."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from botenv.local.processes import tail

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

ROOT = Path(__file__).resolve().parents[2]
# The settings a user may have that the run must see (the caches, the version to run).
KEPT = (
    "BOTENV_CACHE",
    "BOTENV_KUBERNETES_VERSION",
    "BOTENV_CONTROL_PLANE_BIN",
    "BOTENV_RASA_PYTHON",
)
V1 = "Hello! I am the demo assistant, version 1."
V2 = "Hi there! I am the demo assistant, version 2: trained by botenv and now I tell jokes too."


def _left_behind(marker: str) -> list[str]:
    """Processes whose command line, working directory or environment names `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker in cmdline or cwd.startswith(marker) or marker in environ:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.fixture
def demo(tmp_path: Path, rasa_python_venv: Path) -> Iterator[dict]:
    # Not below /tmp: the training pods mount their own /tmp (botenv.local.demo refuses it).
    cache = Path(os.environ.get("BOTENV_CACHE") or Path.home() / ".cache" / "botenv")
    (cache / "test-runs").mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="demo-", dir=cache / "test-runs"))
    log = tmp_path / "run.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "KUBECONFIG" and (not k.startswith("BOTENV_") or k in KEPT)
    }
    env["BOTENV_LOCAL_DIR"] = str(state)
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "run"), "--local"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        # Its own process group, as a terminal's foreground job: Ctrl-C goes to the group.
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 900
        while b"botenv: ready in" not in log.read_bytes():
            assert proc.poll() is None, f"scripts/run exited {proc.returncode}:\n{tail(log, 60)}"
            assert time.monotonic() < deadline, f"not ready after 900 s:\n{tail(log, 60)}"
            time.sleep(1)
        text = log.read_text()
        match = re.search(r"export KUBECONFIG=(\S+)", text)
        assert match, text
        yield {"proc": proc, "log": log, "state": state, "kubeconfig": match.group(1)}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(state, ignore_errors=True)


def botenv(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botenv", *args],
        capture_output=True,
        text=True,
        timeout=360,
        env={**os.environ, "KUBECONFIG": kubeconfig},
    )


def answers(kubeconfig: str, environment: str, text: str) -> list[str]:
    proc = botenv(kubeconfig, "chat", environment, "-n", "demo", "-m", text)
    assert proc.returncode == 0, proc.stderr
    prefix = f"{environment}> "
    return [line.removeprefix(prefix) for line in proc.stdout.splitlines()]


@pytest.mark.timeout(1500)
def test_scripts_run_shows_a_trained_assistant_promoted_and_ctrl_c_leaves_nothing(demo):
    kubeconfig, log = demo["kubeconfig"], demo["log"]
    text = log.read_text()
    # Progress lines, and botenv's own training flow on a first run.
    for expected in (
        "botenv: [1/6] Rasa 3.6.21 for the local node",
        "botenv: [3/6] starting the local control plane",
        "training demo-bot-v1, demo-bot-v2 on the local node first",
        "modeltraining demo-bot-v1: Succeeded",
        "ModelTag 'production' moved to it",
        "botenvironment production: Ready, 1/1 replicas",
        "botenvironment experimental: Ready, 1/1 replicas",
        "botenv promote production --from experimental -n demo --wait",
    ):
        assert expected in text, f"{expected!r} not in:\n{text}"
    print(re.search(r"botenv: ready in .*", text).group(0))  # type: ignore[union-attr]

    status = botenv(kubeconfig, "status", "-n", "demo")
    assert status.returncode == 0, status.stderr
    environments = status.stdout.split("\n\n")[0]  # the first table: the environments
    lines = {line.split()[0]: line for line in environments.splitlines()}
    assert "Ready" in lines["production"] and "demo-bot-v1-" in lines["production"]
    assert "Ready" in lines["experimental"] and "demo-bot-v2-" in lines["experimental"]

    assert answers(kubeconfig, "production", "hello") == [V1]
    assert answers(kubeconfig, "experimental", "hello") == [V2]

    promote = botenv(
        kubeconfig, "promote", "production", "--from", "experimental", "-n", "demo", "--wait"
    )
    assert promote.returncode == 0, promote.stdout + promote.stderr
    assert re.search(
        r"botenvironment 'production' serves demo-bot-v2-\S+ \(1/1 replicas\)", promote.stdout
    ), promote.stdout
    # --wait returned once production served it: the very next question gets version 2.
    assert answers(kubeconfig, "production", "hello") == [V2]

    # examples/demo-bot/README.md: train a project into the running demo yourself.
    trained = botenv(
        kubeconfig,
        "train",
        str(ROOT / "examples" / "demo-bot" / "v2"),
        "--tag",
        "experimental",
        "-n",
        "demo",
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    model = re.search(r"model (experimental-\d{8}-\d{6}\.tar\.gz) stored", trained.stdout)
    assert model, trained.stdout  # named once after the training, time included once

    proc = demo["proc"]
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    assert proc.wait(timeout=120) == 0, tail(log, 40)
    assert "botenv: stopped: everything this run started is gone" in log.read_text()
    left: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        left = _left_behind(str(demo["state"]))
        if not left:
            break
        time.sleep(0.5)
    assert not left, "still running after Ctrl-C:\n" + "\n".join(left)
