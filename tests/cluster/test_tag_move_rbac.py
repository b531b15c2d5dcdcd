"""Tag moves respect RBAC, against the real authorizer: a developer who may create
ModelTrainings and patch the `experimental` tag, but not `production`, cannot move production
by any path. Not by patching it, not by opting it in to trainings, not by deleting and
recreating it, and not by a ModelTraining naming it: the operator refuses that training
(the tag does not opt in, on every Kubernetes version). Where the chart's
ValidatingAdmissionPolicy is installed (1.30+), the API server refuses the training
already, even for a tag that does not exist yet. Their trainings still move experimental,
which opts in. People act through impersonation (`kubectl --as`), so the API server
authorizes and admits each request as theirs."""

from __future__ import annotations

import pytest
import yaml

from tests.cluster.test_environments import model_file, tag
from tests.cluster.test_training import project, training
from tests.support.helm import CHART, run_helm
from tests.support.jobs import finish_pod
from tests.support.kubectl import Kubectl, condition, eventually

pytestmark = pytest.mark.cluster

NS = "tag-moves"
DEVELOPER = ("--as=dev", "--as-group=developers")
# admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy is GA (served by default) from 1.30.
POLICY_SINCE = (1, 30)


def role() -> list[dict]:
    """Developers: trainings of their own, the experimental tag; production is read-only."""
    rules = [
        {
            "apiGroups": ["botenv.dev"],
            "resources": ["modeltrainings"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        },
        {
            "apiGroups": ["botenv.dev"],
            "resources": ["modeltags", "botenvironments"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["botenv.dev"],
            "resources": ["modeltags"],
            "resourceNames": ["experimental"],
            "verbs": ["patch", "update"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]},
    ]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "developer", "namespace": NS},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "developers", "namespace": NS},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "developer",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "developers"}
            ],
        },
    ]


def as_developer(kubectl: Kubectl, *args: str, stdin: str | None = None):
    return kubectl.run(*DEVELOPER, *args, stdin=stdin, check=False)


def create(kubectl: Kubectl, obj: dict, *, developer: bool = True):
    if developer:
        return as_developer(kubectl, "create", "-f", "-", stdin=yaml.safe_dump(obj))
    return kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(obj), check=False)


@pytest.fixture(scope="module")
def team(kubectl: Kubectl) -> Kubectl:
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    production = tag(NS, "production", "prod-1.tar.gz")  # no opt-in: the default
    experimental = tag(NS, "experimental", "exp-1.tar.gz")
    experimental["spec"]["trainings"] = {"allowed": True}
    kubectl.apply(*role(), production, experimental, project(NS))
    return kubectl


def policy_bound(kubectl: Kubectl, control_plane) -> bool:
    """Whether a ValidatingAdmissionPolicy of botenv's chart guards ModelTrainings here."""
    if control_plane.version < POLICY_SINCE:
        return False
    policies = kubectl.run("get", "validatingadmissionpolicybindings", "-o", "yaml").stdout
    return "-tag-moves" in policies


@pytest.mark.compat
def test_a_developer_cannot_move_production_by_any_path(team, operator, control_plane):
    kubectl = team
    for attempt in (
        ("patch", "mtag", "production", "--type=merge", "-p", '{"spec":{"model":"x.tar.gz"}}'),
        (
            "patch",
            "mtag",
            "production",
            "--type=merge",
            "-p",
            '{"spec":{"trainings":{"allowed":true}}}',
        ),
        ("delete", "mtag", "production"),
    ):
        proc = as_developer(kubectl, *attempt, "-n", NS)
        assert proc.returncode != 0 and "Forbidden" in proc.stderr, (attempt, proc.stderr)

    proc = create(kubectl, training(NS, "promote-me", tag="production"))
    if policy_bound(kubectl, control_plane):
        # the second line, where the chart's policy is installed: refused at admission
        assert proc.returncode != 0 and "spec.tag: dev may not patch" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        body = eventually(
            lambda: (
                (b := kubectl.get("mtrain", "promote-me", NS))
                and (b.get("status") or {}).get("phase") == "Failed"
                and b
            ),
            message="the training refused",
        )
        assert body["status"]["reason"] == "TagMoveNotAllowed"
        ready = condition(body, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "TagMoveNotAllowed")
        assert "ModelTag 'production' does not let trainings move it" in ready["message"]
        assert kubectl.get("job", "train-promote-me", NS) is None  # nothing trained
        events = [
            e
            for e in kubectl.list("events", NS)
            if e["involvedObject"]["name"] == "promote-me" and e["reason"] == "TagMoveNotAllowed"
        ]
        assert events and events[0]["type"] == "Warning"
    live = kubectl.get("mtag", "production", NS)
    assert live["spec"]["model"] == "prod-1.tar.gz"
    assert "trainings" not in live["spec"]


@pytest.mark.compat
def test_a_developers_training_moves_the_tag_that_opts_in(team, operator):
    kubectl = team
    body = training(NS, "try-me", tag="experimental")
    body["spec"]["output"]["modelName"] = "exp-2.tar.gz"
    assert create(kubectl, body).returncode == 0
    eventually(lambda: kubectl.get("job", "train-try-me", NS), message="Job created")
    model_file("exp-2.tar.gz", b"trained by a developer")  # what the upload step stores
    finish_pod(kubectl, NS, "train-try-me")
    eventually(
        lambda: kubectl.get("mtag", "experimental", NS)["spec"]["model"] == "exp-2.tar.gz",
        timeout=60,
        message="experimental moved by the developer's training",
    )
    assert kubectl.get("mtrain", "try-me", NS)["status"]["tag"] == "experimental"


@pytest.fixture
def policy(team: Kubectl, control_plane, tmp_path):
    """The chart's ValidatingAdmissionPolicy and its binding, applied; removed afterwards."""
    if control_plane.version < POLICY_SINCE:
        pytest.skip(
            f"Kubernetes {'.'.join(map(str, control_plane.version))} has no "
            "ValidatingAdmissionPolicy; the tag's opt-in is the line there "
            "(test_a_developer_cannot_move_production_by_any_path)"
        )
    rendered = run_helm(
        "template",
        "gate",
        str(CHART),
        "--set",
        "rbac.tagMovePolicy=true",
        "--show-only",
        "templates/admission-policy-tag-moves.yaml",
        home=tmp_path,
    ).stdout
    team.run("apply", "-f", "-", stdin=rendered)
    # The API server starts enforcing a new policy within a second or two.
    probes = iter(range(1000))

    def enforced() -> bool:
        proc = create(team, training(NS, f"probe-{next(probes)}", tag="not-mine"))
        return proc.returncode != 0 and "may not patch" in proc.stderr

    eventually(enforced, timeout=30, message="the policy enforced")
    yield team
    team.run("delete", "-f", "-", stdin=rendered)
    for n in range(next(probes)):  # the probes admitted before the policy was enforced
        team.delete("mtrain", f"probe-{n}", NS)


def test_the_admission_policy_refuses_what_the_author_may_not_patch(policy, operator):
    kubectl = policy
    proc = create(kubectl, training(NS, "sneaky", tag="production"))
    assert proc.returncode != 0
    assert (
        "spec.tag: dev may not patch ModelTag production in namespace tag-moves, so a "
        "ModelTraining of theirs may not move it" in proc.stderr
    ), proc.stderr
    assert kubectl.get("mtrain", "sneaky", NS) is None
    # A tag that does not exist yet would be created by the training: refused as well.
    assert create(kubectl, training(NS, "fresh", tag="staging")).returncode != 0
    # What the developer may patch, they may train into.
    allowed = training(NS, "fine", tag="experimental", backoffLimit=0)
    assert create(kubectl, allowed).returncode == 0
    # The admin's training of production is admitted (the tag's own opt-in still decides).
    assert (
        create(kubectl, training(NS, "admins", tag="production"), developer=False).returncode == 0
    )
    # Changing the admin's training's spec is moving production again: refused for the
    # developer; a label is not.
    patch = as_developer(
        kubectl,
        "patch",
        "mtrain",
        "admins",
        "-n",
        NS,
        "--type=merge",
        "-p",
        '{"spec":{"backoffLimit":0}}',
    )
    assert patch.returncode != 0 and "may not patch ModelTag production" in patch.stderr
    label = as_developer(kubectl, "label", "mtrain", "admins", "-n", NS, "reviewed=yes")
    assert label.returncode == 0, label.stderr
