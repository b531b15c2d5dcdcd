"""`botenv status/promote/rollback/history` as people run them: a subprocess with a
kubeconfig, against the real API server, with the operator resolving tags from local
storage and rolling the environments."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import VIEWER_TOKEN
from tests.cluster.test_environments import env, model_file, tag
from tests.support.archives import rasa_like
from tests.support.kubectl import condition, eventually
from tests.support.pods import make_ready

pytestmark = pytest.mark.cluster

_names = itertools.count()


@pytest.fixture
def ns(kubectl):
    name = f"cli-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def botenv(
    kubeconfig: Path, *args: str, program: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process, as a person would, with KUBECONFIG set."""
    command = program or (sys.executable, "-m", "botenv.cli")
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )


@pytest.fixture
def cli(control_plane):
    return lambda *args: botenv(control_plane.kubeconfig, *args)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}{proc.stdout}"
    return proc.stdout


def template_model(kubectl, ns, environment):
    deploy = kubectl.get("deployment", f"rasa-{environment}", ns)
    return deploy and deploy["spec"]["template"]["metadata"]["annotations"]["botenv.dev/model"]


def resolved(kubectl, ns, name, model):
    return eventually(
        lambda: (kubectl.get("mtag", name, ns).get("status") or {}).get("model") == model,
        message=f"tag {name} resolves {model}",
    )


def test_promote_model_moves_the_tag_and_its_environments_roll(kubectl, operator, cli, ns):
    model_file("cli-m2.tar.gz")
    kubectl.apply(
        tag(ns, "production", "cli-m1.tar.gz"),
        env(ns, "production"),
        env(ns, "worker", modelTag="production"),
    )
    for name in ("production", "worker"):
        eventually(lambda n=name: template_model(kubectl, ns, n) == "cli-m1.tar.gz", message=name)
    out = ok(cli("promote", "production", "--model", "cli-m2.tar.gz", "-n", ns, "--wait"))
    assert (
        f"modeltag 'production' in namespace '{ns}': spec.model cli-m1.tar.gz -> "
        "cli-m2.tar.gz" in out
    )
    assert "modeltag 'production' resolves to cli-m2.tar.gz" in out
    for name in ("production", "worker"):
        eventually(
            lambda n=name: template_model(kubectl, ns, n) == "cli-m2.tar.gz",
            message=f"{name} rolled to the new model",
        )
    # A merge patch by botenv-cli: an Update of spec.model alone, not an apply.
    fields = kubectl.run(
        "get", "mtag", "production", "-n", ns, "-o", "json", "--show-managed-fields"
    ).stdout
    managers = {m["manager"]: m for m in json.loads(fields)["metadata"]["managedFields"]}
    assert managers["botenv-cli"]["operation"] == "Update"
    assert managers["botenv-cli"]["fieldsV1"] == {"f:spec": {"f:model": {}}}


def test_promote_from_another_tag_copies_its_resolved_model(kubectl, operator, cli, ns):
    kubectl.apply(
        tag(ns, "experimental", "cli-exp.tar.gz"),
        tag(ns, "production", "cli-prod.tar.gz"),
        tag(ns, "broken", "cli-absent.tar.gz", create_model=False),
        env(ns, "production"),
    )
    resolved(kubectl, ns, "experimental", "cli-exp.tar.gz")
    eventually(lambda: template_model(kubectl, ns, "production") == "cli-prod.tar.gz")
    out = ok(cli("promote", "production", "--from", "experimental", "-n", ns, "--wait"))
    assert "cli-prod.tar.gz -> cli-exp.tar.gz" in out
    assert "copied from modeltag 'experimental'" in out
    assert kubectl.get("mtag", "production", ns)["spec"]["model"] == "cli-exp.tar.gz"
    eventually(lambda: template_model(kubectl, ns, "production") == "cli-exp.tar.gz")

    # A tag that does not resolve is no source.
    eventually(
        lambda: (
            condition(kubectl.get("mtag", "broken", ns), "Ready").get("reason") == "ModelNotFound"
        ),
        message="broken tag not Ready",
    )
    proc = cli("promote", "production", "--from", "broken", "-n", ns)
    assert proc.returncode == 1, proc.stderr
    assert f"modeltag 'broken' in namespace '{ns}' is not Ready (ModelNotFound" in proc.stderr
    assert kubectl.get("mtag", "production", ns)["spec"]["model"] == "cli-exp.tar.gz"


def test_rollback_returns_to_the_previous_model_and_history_lists_it(kubectl, operator, cli, ns):
    model_file("cli-v2.tar.gz")
    kubectl.apply(tag(ns, "t", "cli-v1.tar.gz"), env(ns, "rolling", modelTag="t"))
    resolved(kubectl, ns, "t", "cli-v1.tar.gz")

    proc = cli("rollback", "t", "-n", ns)  # nothing earlier yet
    assert proc.returncode == 1
    assert f"modeltag 't' in namespace '{ns}' has no earlier model in status.history" in proc.stderr

    ok(cli("promote", "t", "--model", "cli-v2.tar.gz", "-n", ns, "--wait"))
    lines = ok(cli("history", "t", "-n", ns)).splitlines()
    assert lines[0].split() == ["MODEL", "DIGEST", "RESOLVED", "AT", "PROMOTED"]
    assert lines[1].split()[:2] == ["*", "cli-v2.tar.gz"]
    assert lines[2].split()[0] == "cli-v1.tar.gz"

    dry = ok(cli("rollback", "t", "-n", ns, "--dry-run"))
    assert "cli-v2.tar.gz -> cli-v1.tar.gz (dry run: nothing changed)" in dry
    assert kubectl.get("mtag", "t", ns)["spec"]["model"] == "cli-v2.tar.gz"

    out = ok(cli("rollback", "t", "-n", ns, "--wait"))
    assert "spec.model cli-v2.tar.gz -> cli-v1.tar.gz" in out
    assert "the previous model in status.history" in out
    assert kubectl.get("mtag", "t", ns)["status"]["model"] == "cli-v1.tar.gz"
    eventually(
        lambda: template_model(kubectl, ns, "rolling") == "cli-v1.tar.gz",
        message="the environment rolled back",
    )
    # -o json prints the ModelTag as the API server has it, like kubectl get -o json.
    obj = json.loads(ok(cli("history", "t", "-n", ns, "-o", "json")))
    assert (obj["kind"], obj["metadata"]["name"]) == ("ModelTag", "t")
    assert obj["status"]["model"] == "cli-v1.tar.gz"
    assert [h["model"] for h in obj["status"]["history"]] == ["cli-v2.tar.gz", "cli-v1.tar.gz"]
    rows = ok(cli("history", "t", "-n", ns, "--no-headers")).splitlines()
    assert [r.split()[0] for r in rows] == ["*", "cli-v2.tar.gz", "cli-v1.tar.gz"]
    assert ok(cli("history", "t", "-n", ns, "-o", "name")) == "modeltag.botenv.dev/t\n"


def test_wait_reports_a_missing_model_and_rollback_undoes_the_move(kubectl, operator, cli, ns):
    kubectl.apply(tag(ns, "t", "cli-good.tar.gz"))
    resolved(kubectl, ns, "t", "cli-good.tar.gz")
    proc = cli(
        "promote", "t", "--model", "cli-nowhere.tar.gz", "-n", ns, "--wait", "--timeout", "60"
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        f"modeltag 't' in namespace '{ns}' did not move to cli-nowhere.tar.gz: "
        "Ready=False ModelNotFound: model 'cli-nowhere.tar.gz' not found"
    ) in proc.stderr
    assert "cli-good.tar.gz (moving to cli-nowhere.tar.gz)" in ok(cli("status", "-n", ns))
    out = ok(cli("rollback", "t", "-n", ns, "--wait"))
    assert "cli-nowhere.tar.gz -> cli-good.tar.gz" in out
    assert "never resolved" in out
    assert condition(kubectl.get("mtag", "t", ns), "Ready")["status"] == "True"


def test_missing_tag_exits_3(kubectl, cli, ns):
    for args in (
        ("promote", "nope", "--model", "m.tar.gz"),
        ("rollback", "nope"),
        ("history", "nope"),
    ):
        proc = cli(*args, "-n", ns)
        assert proc.returncode == 3, (args, proc.stderr)
        assert f"error: modeltag 'nope' not found in namespace '{ns}'" in proc.stderr
    kubectl.apply(tag(ns, "real", "cli-real.tar.gz"))
    proc = cli("promote", "real", "--from", "ghost", "-n", ns)
    assert proc.returncode == 3
    assert f"modeltag 'ghost' not found in namespace '{ns}'" in proc.stderr


def test_viewer_without_rights_exits_4(control_plane, kubectl, ns):
    kubectl.apply(tag(ns, "production", "cli-m.tar.gz"))
    viewer = control_plane.kubeconfig_for(VIEWER_TOKEN)
    proc = botenv(viewer, "promote", "production", "--model", "other.tar.gz", "-n", ns)
    assert proc.returncode == 4, proc.stderr
    assert (
        f"forbidden: cannot get modeltags.botenv.dev 'production' in namespace '{ns}'"
        in proc.stderr
    )
    assert "system:serviceaccount:botenv-test:viewer" in proc.stderr
    proc = botenv(viewer, "status", "-n", ns)
    assert proc.returncode == 4, proc.stderr
    assert f"cannot list botenvironments.botenv.dev in namespace '{ns}'" in proc.stderr
    assert kubectl.get("mtag", "production", ns)["spec"]["model"] == "cli-m.tar.gz"


def test_status_shows_environments_and_tags(control_plane, kubectl, operator, cli, ns, tmp_path):
    kubectl.apply(
        tag(ns, "production", "cli-s1.tar.gz"),
        env(ns, "production"),
        env(ns, "orphan", modelTag="missing"),
    )
    eventually(
        lambda: (
            condition(kubectl.get("benv", "orphan", ns), "Degraded").get("reason") == "TagNotFound"
        ),
        message="orphan Degraded",
    )
    eventually(
        lambda: (kubectl.get("benv", "production", ns).get("status") or {}).get("model"),
        message="production reports its model",
    )
    eventually(
        lambda: (
            (kubectl.get("mtag", "production", ns).get("status") or {}).get("environments")
            == ["production"]
        ),
        message="tag lists its environment",
    )
    lines = ok(cli("status", "-n", ns)).splitlines()
    assert lines[0].split() == ["ENVIRONMENT", "TAG", "MODEL", "STATUS", "READY"]
    rows = {line.split()[0]: line for line in lines[1:3]}
    assert rows["production"].split()[:4] == [
        "production",
        "production",
        "cli-s1.tar.gz",
        "Progressing",
    ]
    assert rows["production"].split()[-1] == "0/1"
    assert rows["orphan"].split()[:4] == ["orphan", "missing", "-", "Degraded"]
    assert "(TagNotFound)" in rows["orphan"]
    assert any(
        line.split()[:2] == ["production", "cli-s1.tar.gz"] and line.split()[-1] == "production"
        for line in lines
    )
    assert any(line.startswith("  environment orphan: Degraded TagNotFound") for line in lines)

    # -o json/yaml: the objects, in a List as kubectl prints several.
    report = json.loads(ok(cli("status", "-n", ns, "-o", "json")))
    assert (report["apiVersion"], report["kind"]) == ("v1", "List")
    by_name = {(i["kind"], i["metadata"]["name"]): i for i in report["items"]}
    assert set(by_name) == {
        ("BotEnvironment", "orphan"),
        ("BotEnvironment", "production"),
        ("ModelTag", "production"),
    }
    assert by_name[("BotEnvironment", "production")]["status"]["model"]["name"] == "cli-s1.tar.gz"
    assert all("managedFields" not in i["metadata"] for i in report["items"])
    as_yaml = yaml.safe_load(ok(cli("status", "-n", ns, "-o", "yaml")))
    assert {(i["kind"], i["metadata"]["name"]) for i in as_yaml["items"]} == set(by_name)
    assert ok(cli("status", "-n", ns, "-o", "name")).splitlines() == [
        "botenvironment.botenv.dev/orphan",
        "botenvironment.botenv.dev/production",
        "modeltag.botenv.dev/production",
    ]
    bare = ok(cli("status", "-n", ns, "--no-headers"))
    assert "ENVIRONMENT" not in bare and "orphan" in bare
    assert "UP-TO-DATE" in ok(cli("status", "-n", ns, "-o", "wide"))

    everywhere = ok(cli("status", "-A"))
    assert any(line.split()[:2] == [ns, "orphan"] for line in everywhere.splitlines())

    # Without -n, the namespace of the kubeconfig's context.
    config = tmp_path / "kubeconfig"
    config.write_text(
        control_plane.kubeconfig.read_text().replace("namespace: default", f"namespace: {ns}")
    )
    assert "orphan" in ok(botenv(config, "status"))


def test_kubectl_plugin(control_plane, kubectl, ns):
    plugin = Path(sys.executable).parent / "kubectl-botenv"
    assert plugin.exists(), "kubectl-botenv is missing: re-run scripts/bootstrap.sh"
    kubectl.apply(tag(ns, "production", "cli-k.tar.gz"))
    env_ = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "PATH": f"{plugin.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        ["kubectl", "botenv", "history", "production", "-n", ns],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_,
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        ["kubectl", "botenv", "history", "nope", "-n", ns],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_,
    )
    assert proc.returncode == 3
    assert f"modeltag 'nope' not found in namespace '{ns}'" in proc.stderr
    usage = subprocess.run(
        ["kubectl", "botenv", "promote"], capture_output=True, text=True, timeout=120, env=env_
    )
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: kubectl botenv promote")


def test_rollback_restores_the_action_server_image_that_went_with_the_model(
    kubectl, operator, cli, ns
):
    model_file("cli-a2.tar.gz")
    kubectl.apply(
        {
            **tag(ns, "t", "cli-a1.tar.gz"),
            "spec": {
                **tag(ns, "t", "cli-a1.tar.gz")["spec"],
                "actionServerImage": "acme/actions:1",
            },
        }
    )
    resolved(kubectl, ns, "t", "cli-a1.tar.gz")
    kubectl.patch(
        "mtag", "t", ns, {"spec": {"model": "cli-a2.tar.gz", "actionServerImage": "acme/actions:2"}}
    )
    resolved(kubectl, ns, "t", "cli-a2.tar.gz")
    proc = cli("rollback", "t", "-n", ns, "--wait")
    assert proc.returncode == 0, proc.stderr
    assert "action server image: acme/actions:2 -> acme/actions:1" in proc.stdout
    spec = kubectl.get("mtag", "t", ns)["spec"]
    assert (spec["model"], spec["actionServerImage"]) == ("cli-a1.tar.gz", "acme/actions:1")
    status = kubectl.get("mtag", "t", ns)["status"]
    assert (status["model"], status["actionServerImage"]) == ("cli-a1.tar.gz", "acme/actions:1")


def test_promote_wait_fails_at_once_for_an_environment_that_refuses_the_model(
    kubectl, operator, cli, ns
):
    model_file("cli-gate-v1.tar.gz", rasa_like("3.6.21"))
    model_file("cli-gate-old.tar.gz", rasa_like("3.5.4"))
    kubectl.apply(tag(ns, "production", "cli-gate-v1.tar.gz", create_model=False))
    kubectl.apply(env(ns, "production"))
    eventually(
        lambda: make_ready(kubectl, ns, "botenv.dev/environment=production") == 1,
        message="pod created and marked ready",
    )
    kubectl.run("wait", "--for=condition=Ready", "benv/production", "-n", ns, "--timeout=30s")
    proc = cli(
        "promote", "production", "--model", "cli-gate-old.tar.gz", "-n", ns, "--wait",
        "--timeout", "120",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert (
        "botenvironment 'production' refuses cli-gate-old.tar.gz: trained with Rasa 3.5.4, but "
        "Rasa 3.6.21 (image rasa/rasa:3.6.21-full) loads only models trained with Rasa 3.6.21 "
        "or later"
    ) in proc.stdout
    assert "'production' cannot load cli-gate-old.tar.gz and stay on their model" in proc.stderr
    out = ok(cli("status", "-n", ns))
    assert "production (refused)" in out
    assert "Degraded (ModelIncompatible)" in out
    assert template_model(kubectl, ns, "production") == "cli-gate-v1.tar.gz"
