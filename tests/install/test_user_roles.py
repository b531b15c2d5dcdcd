"""The chart's roles for people, and the README's `resourceNames` example, against the real
API server's RBAC authorizer (`kubectl auth can-i` as each person, by impersonation)."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.install.conftest import template_args
from tests.support.helm import REPO_ROOT

pytestmark = [pytest.mark.install, pytest.mark.cluster]

NS = "install-roles"
RELEASE = "people"  # object names: people-botenv-viewer, ...


@pytest.fixture(scope="module")
def roles(kubectl, helm):
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    rendered = helm(
        *template_args(RELEASE, NS, None, "--show-only", "templates/rbac-user-roles.yaml")
    ).stdout
    kubectl.run("apply", "-f", "-", stdin=rendered)
    bindings = [
        ("viewer", "people-botenv-viewer"),
        ("editor", "people-botenv-editor"),
        ("promoter", "people-botenv-promoter"),
        ("builtin-view", "view"),
        ("builtin-edit", "edit"),
    ]
    for group, role in bindings:
        binding = kubectl.run(
            "create",
            "rolebinding",
            f"{group}-binding",
            f"--clusterrole={role}",
            f"--group={group}",
            "-n",
            NS,
            "--dry-run=client",
            "-o",
            "yaml",
        ).stdout
        kubectl.run("apply", "-f", "-", stdin=binding)
    return kubectl


def can(
    kubectl, group: str, verb: str, resource: str, namespace: str = NS, subresource: str = ""
) -> bool:
    args = [
        "auth",
        "can-i",
        verb,
        resource,
        "-n",
        namespace,
        f"--as=person-in-{group}",
        f"--as-group={group}",
    ]
    if subresource:
        args.append(f"--subresource={subresource}")
    answer = kubectl.run(*args, check=False).stdout.strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


ENV = "botenvironments.botenv.dev"
TAG = "modeltags.botenv.dev"


@pytest.mark.parametrize("group", ["viewer", "builtin-view"])
def test_viewers_read_both_kinds_and_change_nothing(roles, group):
    for resource in (ENV, TAG):
        for verb in ("get", "list", "watch"):
            assert can(roles, group, verb, resource)
        for verb in ("create", "patch", "update", "delete"):
            assert not can(roles, group, verb, resource)
    assert can(roles, group, "get", ENV, subresource="scale")
    assert not can(roles, group, "update", ENV, subresource="scale")
    assert not can(roles, group, "get", "secrets")


@pytest.mark.parametrize("group", ["editor", "builtin-edit"])
def test_editors_change_both_kinds_but_not_status(roles, group):
    for resource in (ENV, TAG):
        for verb in ("get", "list", "create", "patch", "update", "delete", "deletecollection"):
            assert can(roles, group, verb, resource)
        assert not can(roles, group, "patch", resource, subresource="status")
    # kubectl scale benv/NAME
    for verb in ("get", "update", "patch"):
        assert can(roles, group, verb, ENV, subresource="scale")


def test_promoter_moves_tags_only(roles):
    assert can(roles, "promoter", "list", ENV)
    assert can(roles, "promoter", "get", ENV)
    for verb in ("create", "patch", "update", "delete"):
        assert not can(roles, "promoter", verb, ENV)
    assert not can(roles, "promoter", "update", ENV, subresource="scale")
    for verb in ("get", "list", "watch", "patch", "update"):
        assert can(roles, "promoter", verb, TAG)
    for verb in ("create", "delete", "deletecollection"):
        assert not can(roles, "promoter", verb, TAG)
    assert not can(roles, "promoter", "patch", TAG, subresource="status")
    assert not can(roles, "promoter", "get", "secrets")
    # Bound in one namespace only.
    assert not can(roles, "promoter", "patch", TAG, namespace="default")


def readme_production_role() -> list[dict]:
    """The README's YAML example that limits a Role to the production tag."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.S)
    matching = [b for b in blocks if "resourceNames: [production]" in b]
    assert len(matching) == 1, "the README's resourceNames example is missing"
    return [d for d in yaml.safe_load_all(matching[0]) if d]


def test_readme_resource_names_example(kubectl):
    docs = readme_production_role()
    assert [d["kind"] for d in docs] == ["Role", "RoleBinding"]
    ns = "install-readme-roles"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for doc in docs:
        doc["metadata"]["namespace"] = ns
    kubectl.apply(*docs)
    group = docs[1]["subjects"][0]["name"]
    assert group == "release-managers"
    assert can(kubectl, group, "patch", f"{TAG}/production", ns)
    assert can(kubectl, group, "update", f"{TAG}/production", ns)
    assert not can(kubectl, group, "patch", f"{TAG}/experimental", ns)
    assert not can(kubectl, group, "delete", f"{TAG}/production", ns)
    assert not can(kubectl, group, "patch", f"{ENV}/production", ns)
    assert can(kubectl, group, "list", TAG, ns)
    assert can(kubectl, group, "get", f"{ENV}/production", ns)
    # Someone outside the group cannot move it.
    assert not can(kubectl, "developers", "patch", f"{TAG}/production", ns)
