"""GitOps on the real API server: the Argo CD health checks read the statuses the running
operator writes, and the operator owns only what it writes (server-side apply field
ownership), so it never fights Argo CD or Flux over a field."""

from __future__ import annotations

import base64
import itertools
import json
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import MODELS as ALLOWED_MODELS
from tests.gitops.argocd import health
from tests.support.kubectl import condition, eventually
from tests.support.pods import make_ready

pytestmark = pytest.mark.cluster

_names = itertools.count()
# Under the one local storage root the tests' storage policy allows.
MODELS = Path(tempfile.mkdtemp(prefix="gitops-", dir=ALLOWED_MODELS))
GITOPS_MANAGER = "argocd-controller"


@pytest.fixture
def ns(kubectl):
    name = f"gitops-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def tag(ns: str, name: str, model: str, *, present: bool = True) -> dict:
    if present:
        (MODELS / model).write_bytes(f"model {model}".encode())
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTag",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"model": model, "storage": {"provider": "local", "path": str(MODELS)}},
    }


def env(ns: str, name: str, **spec: object) -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "BotEnvironment",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def secret(ns: str, name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def gitops_apply(kubectl, *docs: dict) -> None:
    """Apply as Argo CD does with ServerSideApply=true (and Flux always): server-side, under
    the tool's own field manager, without forcing conflicts."""
    kubectl.run(
        "apply",
        "--server-side",
        f"--field-manager={GITOPS_MANAGER}",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs),
    )


def with_managed_fields(kubectl, kind: str, name: str, ns: str) -> dict:
    return json.loads(
        kubectl.run("get", kind, name, "-n", ns, "-o", "json", "--show-managed-fields").stdout
    )


def create(kubectl, doc: dict) -> dict:
    """Create `doc`; returns the object as the API server answered the create, before the
    operator can have seen it."""
    return json.loads(
        kubectl.run("create", "-f", "-", "-o", "json", stdin=yaml.safe_dump(doc)).stdout
    )


def patch(kubectl, kind: str, name: str, ns: str, spec: dict) -> dict:
    """Merge-patch the spec; returns the object as the API server answered the patch: a new
    generation that the operator cannot have observed yet."""
    return json.loads(
        kubectl.run(
            "patch",
            kind,
            name,
            "-n",
            ns,
            "--type",
            "merge",
            "-p",
            json.dumps({"spec": spec}),
            "-o",
            "json",
        ).stdout
    )


def health_of(kubectl, kind: str, name: str, ns: str) -> dict:
    return health(kubectl.get(kind, name, ns))


def wait_health(
    kubectl, kind: str, name: str, ns: str, status: str, *, message: str = "", poke: object = None
) -> dict:
    """Wait until Argo CD would show `status` (with a message starting with `message`) for
    the object; `poke()` runs before each look."""

    def check() -> dict | None:
        if poke is not None:
            poke()
        result = health_of(kubectl, kind, name, ns)
        if result["status"] == status and result["message"].startswith(message):
            return result
        return None

    return eventually(check, timeout=60, message=f"{kind} {name} {status} {message}")


# --- Argo CD health of real statuses ---------------------------------------------------------


def test_tag_health_as_it_resolves_and_moves_to_a_missing_model(kubectl, operator, ns):
    created = create(kubectl, tag(ns, "production", "m1.tar.gz"))
    assert health(created) == {
        "status": "Progressing",
        "message": "Waiting for the botenv operator to resolve the tag",
    }
    healthy = wait_health(kubectl, "mtag", "production", ns, "Healthy")
    assert healthy["message"].startswith("Resolved: model m1.tar.gz (digest ")

    moved = patch(kubectl, "mtag", "production", ns, {"model": "missing.tar.gz"})
    assert moved["status"]["observedGeneration"] < moved["metadata"]["generation"]
    assert health(moved) == {
        "status": "Progressing",
        "message": "Waiting for the botenv "
        f"operator to observe generation {moved['metadata']['generation']}",
    }

    degraded = wait_health(kubectl, "mtag", "production", ns, "Degraded")
    assert degraded["message"].startswith("ModelNotFound: model 'missing.tar.gz' not found")
    assert degraded["message"].endswith("the tag stays on m1.tar.gz")


def test_tag_whose_model_never_existed_is_degraded(kubectl, operator, ns):
    kubectl.apply(tag(ns, "experimental", "never-uploaded.tar.gz", present=False))
    degraded = wait_health(kubectl, "mtag", "experimental", ns, "Degraded")
    assert "ModelNotFound" in degraded["message"]
    assert "no environment can start until it resolves" in degraded["message"]
    mtag = kubectl.get("mtag", "experimental", ns)
    assert mtag["status"]["observedGeneration"] == mtag["metadata"]["generation"]


def test_environment_whose_secret_is_missing_is_degraded(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "production", "m1.tar.gz"),
        env(ns, "production", auth={"tokenSecretRef": {"name": "rasa-auth"}}),
    )
    degraded = wait_health(kubectl, "benv", "production", ns, "Degraded")
    assert degraded["message"].startswith("SecretMissing: ")
    assert "'rasa-auth'" in degraded["message"]
    # Creating the Secret repairs it: the environment rolls out.
    kubectl.apply(secret(ns, "rasa-auth", token="t0k3n"))
    operator.resync_now()  # Secrets are not watched
    wait_health(kubectl, "benv", "production", ns, "Progressing", message="RollingOut: ")


def test_environment_health_from_creation_to_ready_and_through_a_spec_change(kubectl, operator, ns):
    kubectl.apply(tag(ns, "production", "m1.tar.gz"))
    wait_health(kubectl, "mtag", "production", ns, "Healthy")
    created = create(kubectl, env(ns, "production", replicas=1))
    assert health(created) == {
        "status": "Progressing",
        "message": "Waiting for the botenv operator to report the environment's status",
    }

    wait_health(kubectl, "benv", "production", ns, "Progressing", message="RollingOut: ")
    pods = "botenv.dev/environment=production"
    healthy = wait_health(
        kubectl, "benv", "production", ns, "Healthy", poke=lambda: make_ready(kubectl, ns, pods)
    )
    assert healthy == {"status": "Healthy", "message": "Ready: 1 of 1 replicas serve the model"}

    changed = patch(kubectl, "benv", "production", ns, {"podAnnotations": {"team": "bots"}})
    generation = changed["metadata"]["generation"]
    assert health(changed) == {
        "status": "Progressing",
        "message": f"Waiting for the botenv operator to observe generation {generation}",
    }
    wait_health(
        kubectl, "benv", "production", ns, "Healthy", poke=lambda: make_ready(kubectl, ns, pods)
    )
    benv = kubectl.get("benv", "production", ns)
    assert benv["status"]["observedGeneration"] == generation
    assert all(c["observedGeneration"] == generation for c in benv["status"]["conditions"])


# --- field ownership -----------------------------------------------------------------------


def managers(obj: dict) -> dict[str, dict]:
    """manager -> {operation, fields} of every managedFields entry."""
    return {
        m["manager"]: {"operation": m["operation"], "fields": m.get("fieldsV1", {})}
        for m in obj["metadata"].get("managedFields", [])
    }


def owns(fields: dict, *path: str) -> bool:
    for key in path:
        if key not in fields:
            return False
        fields = fields[key]
    return True


def test_operator_owns_only_the_status_of_what_a_gitops_tool_applies(kubectl, operator, ns):
    gitops_apply(
        kubectl,
        tag(ns, "production", "m1.tar.gz"),
        secret(ns, "rasa-auth", token="t0k3n"),
        env(
            ns,
            "production",
            replicas=1,
            auth={"tokenSecretRef": {"name": "rasa-auth"}},
            podAnnotations={"team": "bots"},
        ),
    )
    for kind in ("benv", "mtag"):
        eventually(
            lambda k=kind: (
                condition(kubectl.get(k, "production", ns), "Ready").get("observedGeneration")
                == kubectl.get(k, "production", ns)["metadata"]["generation"]
            ),
            message=f"{kind} status",
        )
    operator.settle()

    for kind in ("benv", "mtag"):
        obj = with_managed_fields(kubectl, kind, "production", ns)
        entries = managers(obj)
        gitops = entries.pop(GITOPS_MANAGER)
        assert gitops["operation"] == "Apply"
        assert owns(gitops["fields"], "f:spec") and not owns(gitops["fields"], "f:status")
        if kind == "benv":
            assert owns(gitops["fields"], "f:spec", "f:auth", "f:tokenSecretRef", "f:name")
            assert owns(gitops["fields"], "f:spec", "f:podAnnotations", "f:team")
        # Everyone else is the operator, and it owns status and nothing else.
        assert set(entries) == {"botenv"}, entries
        assert entries["botenv"]["operation"] == "Update"  # a merge patch of /status
        assert set(entries["botenv"]["fields"]) == {"f:status"}, (kind, entries)
        # No finalizers, annotations or labels of the operator's (or kopf's).
        assert not obj["metadata"].get("finalizers")
        assert not obj["metadata"].get("annotations")
        assert not obj["metadata"].get("labels")

    # The GitOps tool re-applies its manifests after the operator wrote status: no conflict
    # (a conflict would make kubectl fail here, since it does not force).
    gitops_apply(
        kubectl,
        tag(ns, "production", "m1.tar.gz"),
        env(
            ns,
            "production",
            replicas=1,
            auth={"tokenSecretRef": {"name": "rasa-auth"}},
            podAnnotations={"team": "bots"},
        ),
    )


def test_operator_status_writes_are_recorded_under_its_field_manager(kubectl, operator, ns):
    gitops_apply(kubectl, tag(ns, "production", "m1.tar.gz"))
    wait_health(kubectl, "mtag", "production", ns, "Healthy")
    entries = managers(with_managed_fields(kubectl, "mtag", "production", ns))
    status_owners = {m for m, e in entries.items() if owns(e["fields"], "f:status")}
    assert status_owners == {"botenv"}


def test_fields_another_tool_sets_on_a_child_survive_the_operators_reconcile(kubectl, operator, ns):
    gitops_apply(
        kubectl,
        tag(ns, "production", "m1.tar.gz"),
        env(ns, "production", replicas=1, podAnnotations={"team": "bots"}),
    )
    eventually(lambda: kubectl.get("deployment", "rasa-production", ns), message="Deployment")
    operator.settle()
    kubectl.run(
        "label",
        "deployment",
        "rasa-production",
        "-n",
        ns,
        "example.com/cost-center=bots-42",
        "--field-manager=cost-labeller",
    )
    kubectl.run(
        "annotate",
        "deployment",
        "rasa-production",
        "-n",
        ns,
        "example.com/owner=platform-team",
        "--field-manager=cost-labeller",
    )

    # A change to the environment makes the operator apply the Deployment again.
    gitops_apply(kubectl, env(ns, "production", replicas=1, podAnnotations={"team": "bots-2"}))

    def reapplied() -> dict | None:
        deploy = kubectl.get("deployment", "rasa-production", ns)
        annotations = deploy["spec"]["template"]["metadata"].get("annotations", {})
        return deploy if annotations.get("team") == "bots-2" else None

    eventually(reapplied, message="the operator re-applied the Deployment")
    operator.settle()

    deploy = with_managed_fields(kubectl, "deployment", "rasa-production", ns)
    assert deploy["metadata"]["labels"]["example.com/cost-center"] == "bots-42"
    assert deploy["metadata"]["annotations"]["example.com/owner"] == "platform-team"
    entries = managers(deploy)
    assert entries["botenv"]["operation"] == "Apply"
    assert owns(
        entries["cost-labeller"]["fields"], "f:metadata", "f:labels", "f:example.com/cost-center"
    )
    assert not owns(
        entries["botenv"]["fields"], "f:metadata", "f:labels", "f:example.com/cost-center"
    )
    assert not owns(
        entries["botenv"]["fields"], "f:metadata", "f:annotations", "f:example.com/owner"
    )
