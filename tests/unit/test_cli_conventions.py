"""The CLI conventions a kubectl user expects: Job-internal commands hidden from --help, one
line and exit code 5 for a kubeconfig that is broken or a cluster that does not answer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from botenv import cli
from botenv.cli import shared


def run_botenv(kubeconfig, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    return subprocess.run(
        [sys.executable, "-m", "botenv", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "KUBECONFIG": str(kubeconfig)},
    )


def kubeconfig(path, server):
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster:\n    server: {server}\n"
        "users:\n- name: u\n  user:\n    token: t\n"
        "contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n"
        "current-context: ctx\n"
    )
    return path


# --- hidden Job steps ---------------------------------------------------------------------


@pytest.mark.parametrize("main", [cli.main, cli.kubectl_main])
def test_job_steps_are_hidden_from_help(main, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "upload" not in out and "fetch-project" not in out
    assert "{operator,model-server,version,status," in out
    assert "SUPPRESS" not in out


def test_job_steps_still_parse():
    parser = cli.build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["upload", "--help"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["fetch-project", "--help"])
    assert exc.value.code == 0


# --- a broken kubeconfig, an unreachable cluster ------------------------------------------


@pytest.mark.parametrize(
    "content",
    ["apiVersion: v1\nclusters: [\n  - : : garbage {{\n", "hello\n", "\x00\x01 not yaml"],
)
def test_malformed_kubeconfig_is_one_line_and_exit_5(tmp_path, content):
    path = tmp_path / "config"
    path.write_text(content)
    proc = run_botenv(path, "status")
    assert proc.returncode == shared.EXIT_UNREACHABLE, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: kubeconfig ") and str(path) in proc.stderr


def test_operator_without_a_reachable_cluster_says_so_and_exits(tmp_path):
    config = kubeconfig(tmp_path / "config", "https://127.0.0.1:1")
    proc = run_botenv(config, "operator", "--leader-elect", timeout=60)
    assert proc.returncode == shared.EXIT_UNREACHABLE, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot reach the cluster at https://127.0.0.1:1" in proc.stderr


def test_operator_with_a_malformed_kubeconfig_says_so_and_exits(tmp_path):
    path = tmp_path / "config"
    path.write_text("hello\n")
    proc = run_botenv(path, "operator", timeout=60)
    assert proc.returncode == shared.EXIT_UNREACHABLE, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
