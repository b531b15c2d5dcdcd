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


# --- -o yaml|json|wide|name, --no-headers -------------------------------------------------

ENV = {
    "apiVersion": "botenv.dev/v1alpha1",
    "kind": "BotEnvironment",
    "metadata": {"name": "prod", "namespace": "bots", "managedFields": [{"manager": "x"}]},
    "spec": {"modelTag": "production"},
}
TAG = {
    "metadata": {"name": "production", "namespace": "bots"},
    "spec": {"model": "m2.tar.gz"},
    "status": {
        "model": "m1.tar.gz",
        "digest": "a" * 64,
        "resolvedAt": "2024-06-12T11:00:00Z",
        "actionServerImage": "acme/actions:1",
        "history": [
            {"model": "m0.tar.gz", "digest": "b" * 64, "resolvedAt": "2024-06-01T00:00:00Z"}
        ],
    },
}


def test_documents_are_one_object_or_a_list_like_kubectl():
    from botenv.cli import output

    one = output.documents([("BotEnvironment", ENV)])
    assert one["kind"] == "BotEnvironment" and one["metadata"]["name"] == "prod"
    assert "managedFields" not in one["metadata"]  # kubectl leaves them out too
    assert "managedFields" in ENV["metadata"]  # the input is not changed
    several = output.documents([("BotEnvironment", ENV), ("ModelTag", TAG)])
    assert several["apiVersion"] == "v1" and several["kind"] == "List"
    assert [(i["apiVersion"], i["kind"]) for i in several["items"]] == [
        ("botenv.dev/v1alpha1", "BotEnvironment"),
        ("botenv.dev/v1alpha1", "ModelTag"),
    ]
    assert output.documents([])["items"] == []


def test_yaml_and_json_render_the_documents():
    import json

    import yaml

    from botenv.cli import output

    doc = output.documents([("ModelTag", TAG)])
    assert yaml.safe_load(output.render_document(doc, "yaml")) == doc
    assert json.loads(output.render_document(doc, "json")) == doc


def test_name_output_is_resource_dot_group_slash_name():
    from botenv.cli import output

    assert output.names([("BotEnvironment", ENV), ("ModelTag", TAG)]) == (
        "botenvironment.botenv.dev/prod\nmodeltag.botenv.dev/production"
    )


def test_no_headers_and_wide_on_status():
    import datetime

    from botenv.cli import output

    now = datetime.datetime(2024, 6, 12, 12, 0, tzinfo=datetime.UTC)
    envs = [output.environment_summary(ENV)]
    tags = [output.tag_summary(TAG)]
    plain = output.status_text(envs, tags, namespace="bots", now=now).splitlines()
    assert plain[0].split()[:2] == ["ENVIRONMENT", "TAG"]
    bare = output.status_text(envs, tags, namespace="bots", now=now, no_headers=True)
    assert "ENVIRONMENT" not in bare and "TAG " not in bare and "Not ready" not in bare
    assert bare.splitlines()[0].split()[:2] == ["prod", "production"]
    wide = output.status_text(envs, tags, namespace="bots", now=now, wide=True)
    assert "UP-TO-DATE" in wide and "SPEC MODEL" in wide and "a" * 64 in wide
    assert "a" * 64 not in "\n".join(plain)


def test_no_headers_and_wide_on_history():
    import datetime

    from botenv.cli import output

    now = datetime.datetime(2024, 6, 12, 12, 0, tzinfo=datetime.UTC)
    plain = output.history_text(TAG, now)
    assert "MODEL" in plain.splitlines()[0]
    bare = output.history_text(TAG, now, no_headers=True).splitlines()
    assert bare[0].split()[:2] == ["*", "m1.tar.gz"] and bare[1].split()[0] == "m0.tar.gz"
    wide = output.history_text(TAG, now, wide=True)
    assert "ACTION SERVER" in wide and "acme/actions:1" in wide and "b" * 64 in wide


@pytest.mark.parametrize("command", [["status"], ["history", "t"]])
@pytest.mark.parametrize("fmt", ["yaml", "json", "wide", "name", "table"])
def test_output_flags_parse(command, fmt):
    args = cli.build_parser().parse_args([*command, "-o", fmt, "--no-headers"])
    assert args.output == fmt and args.no_headers


# --- status -w --------------------------------------------------------------------------------


def test_watch_shows_each_change_once_and_ctrl_c_is_success():
    from botenv.cli import people

    def source():
        yield from ["a", "a", "b", "b", "a"]
        raise KeyboardInterrupt

    shown: list[str] = []
    assert people.watch(source(), key=lambda s: s, show=shown.append) == shared.EXIT_OK
    assert shown == ["a", "b", "a"]


class FakeSession:
    """A Session whose BotEnvironments change as the test says; Ctrl-C when they run out."""

    snapshots: list[list[dict]] = []

    def __init__(self, args):
        self.namespace, self.all_namespaces = "bots", False

    def list(self, kind):
        if kind != "BotEnvironment":
            return []
        if not FakeSession.snapshots:
            raise KeyboardInterrupt
        return FakeSession.snapshots.pop(0)


def ready_env(ready_replicas):
    cond = {"type": "Ready", "status": "True" if ready_replicas else "False", "reason": "R"}
    return {
        "metadata": {"name": "prod", "namespace": "bots", "generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "readyReplicas": ready_replicas, "conditions": [cond]},
    }


@pytest.mark.parametrize("fmt", ["table", "name", "yaml"])
def test_status_watch_reprints_when_something_changed(monkeypatch, capsys, fmt):
    from botenv.cli import people

    monkeypatch.setattr(people, "Session", FakeSession)
    monkeypatch.setattr(people, "WATCH_INTERVAL", 0)
    FakeSession.snapshots = [[ready_env(0)], [ready_env(0)], [ready_env(1)], [ready_env(1)]]
    assert cli.main(["status", "-w", "-o", fmt]) == shared.EXIT_OK
    out = capsys.readouterr().out
    if fmt == "table":
        assert out.count("ENVIRONMENT") == 2
        assert "0/1" in out and "1/1" in out
    elif fmt == "name":
        # -o name shows names: the readiness change does not change what it prints
        assert out.splitlines() == ["botenvironment.botenv.dev/prod"]
    else:
        assert out.count("kind: BotEnvironment") == 2 and "\n---\n" in out


# --- completion --------------------------------------------------------------------------------


def complete_in_bash(*words: str) -> list[str]:
    """What `botenv <words><TAB>` offers in bash with `botenv completion bash` sourced."""
    script = (
        'source <("$PY" -m botenv completion bash) && complete -p botenv && '
        f"COMP_WORDS=(botenv {' '.join(words)}) && COMP_CWORD={len(words)} && "
        '_botenv && printf "%s\\n" "${COMPREPLY[@]}"'
    )
    proc = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PY": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("complete ") and lines[0].endswith(" botenv")
    return [line for line in lines[1:] if line]


def test_bash_completion_registers_and_offers_commands_options_and_choices():
    assert complete_in_bash("st") == ["status"]
    commands = complete_in_bash("''")
    assert {"status", "promote", "history", "completion", "operator"} <= set(commands)
    assert "upload" not in commands and "fetch-project" not in commands
    assert {"--watch", "--output", "--no-headers", "-A"} <= set(complete_in_bash("status", "-"))
    assert complete_in_bash("status", "-o", "''") == ["table", "wide", "yaml", "json", "name"]
    assert complete_in_bash("history", "tag", "--o") == ["--output"]
    assert complete_in_bash("completion", "''") == ["bash", "zsh"]
    assert complete_in_bash("status", "-n", "''") == []  # a value to type, not an option


def test_zsh_completion_is_the_bash_one_through_bashcompinit(capsys):
    assert cli.main(["completion", "zsh"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#compdef botenv") and "bashcompinit" in out and "_botenv" in out
