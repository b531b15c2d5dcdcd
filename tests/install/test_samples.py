"""manifests/samples/: production, experimental and worker environments with their tags, and
example Secrets. They must be what the operator accepts, name only Secrets (and keys) the
samples provide, and apply cleanly to the real API server with kubectl's own validation
against the CRDs in crds/ (an unknown field fails)."""

from __future__ import annotations

import pytest
import yaml

from botenv.api import parse_environment, parse_tag
from botenv.api.training import parse_training
from tests.support.helm import REPO_ROOT

pytestmark = pytest.mark.install

SAMPLES = REPO_ROOT / "manifests" / "samples"
FILES = sorted(p.name for p in SAMPLES.glob("*.yaml"))


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((SAMPLES / name).read_text()) if d]


def all_docs() -> list[dict]:
    return [d for name in FILES for d in docs(name)]


def test_the_samples_are_there():
    assert {
        "quickstart.yaml",
        "production.yaml",
        "experimental.yaml",
        "worker.yaml",
        "secrets-storage.yaml",
        "secrets-stores.yaml",
    } <= set(FILES)
    environments = {
        d["metadata"]["name"]: d
        for name in FILES
        if name != "quickstart.yaml"
        for d in docs(name)
        if d["kind"] == "BotEnvironment"
    }
    assert {"production", "experimental", "worker"} <= set(environments)
    providers = {d["spec"]["storage"]["provider"] for d in all_docs() if d["kind"] == "ModelTag"}
    assert {"s3", "gcs", "azure"} <= providers
    stores = {name: d["spec"] for name, d in environments.items()}
    assert stores["production"]["trackerStore"]["dialect"] == "postgresql"
    assert stores["production"]["lockStore"]["type"] == "redis"
    assert "eventBroker" in stores["production"]


@pytest.mark.parametrize("name", FILES)
def test_every_sample_is_accepted_by_the_operator(name):
    for doc in docs(name):
        if doc["kind"] == "BotEnvironment":
            parse_environment(doc, "rasa/rasa:3.6.21-full")
        elif doc["kind"] == "ModelTag":
            parse_tag(doc)
        elif doc["kind"] == "ModelTraining":
            parse_training(doc, "rasa/rasa:3.6.21-full")
        else:
            assert doc["kind"] in ("Namespace", "Secret", "ConfigMap"), doc["kind"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "bots"


def secret_refs(obj: object, path: str = ""):
    """(path, name, key) of every secretRef / *SecretRef in a spec."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if (key == "secretRef" or key.endswith("SecretRef")) and isinstance(value, dict):
                yield f"{path}.{key}", value["name"], value.get("key")
            else:
                yield from secret_refs(value, f"{path}.{key}")


def test_referenced_secrets_are_in_the_samples():
    secrets = {
        d["metadata"]["name"]: set(d.get("stringData", {})) | set(d.get("data", {}))
        for name in FILES
        if name != "quickstart.yaml"
        for d in docs(name)
        if d["kind"] == "Secret"
    }
    for name in FILES:
        if name == "quickstart.yaml":
            continue
        for doc in docs(name):
            for path, secret, key in secret_refs(doc.get("spec", {}), "spec"):
                assert secret in secrets, f"{name}: {path} names Secret {secret!r}"
                if key:
                    assert key in secrets[secret], f"{name}: {path} key {key!r}"


def test_sample_secrets_hold_only_placeholders():
    for doc in all_docs():
        if doc["kind"] != "Secret":
            continue
        assert "data" not in doc  # readable placeholders, not base64
        for key, value in doc["stringData"].items():
            fake = any(marker in value for marker in ("REPLACE", "change-me", "example"))
            assert fake or key in ("username", "credentials.yml"), (doc["metadata"]["name"], key)


@pytest.mark.cluster
def test_samples_apply_to_the_real_api_server(kubectl):
    # The files as they are: kubectl validates them against the CRDs' schemas (an unknown
    # field fails) and the server checks them (dry run: no sample objects are left behind).
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bots"}})
    for name in FILES:
        proc = kubectl.run("apply", "--dry-run=server", "-f", str(SAMPLES / name), check=False)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        assert proc.stdout.count("(server dry run)") == len(docs(name)), proc.stdout
    kubectl.run("apply", "--dry-run=server", "-f", str(SAMPLES))


@pytest.mark.cluster
def test_samples_are_stored_as_written(kubectl):
    """Applied for real (into a namespace of their own): the server keeps every field (the
    CRDs prune unknown ones silently, so a field lost here is a field the CRD lacks)."""
    ns = "install-samples"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    # quickstart.yaml and production.yaml both define "production": the fuller one wins.
    latest = {}
    for name in sorted(FILES, key=lambda n: n != "quickstart.yaml"):
        for doc in docs(name):
            if doc["kind"] in ("BotEnvironment", "ModelTag", "ModelTraining"):
                meta = {**doc["metadata"], "namespace": ns}
                latest[(doc["kind"], meta["name"])] = {**doc, "metadata": meta}
    kubectl.apply(*latest.values())
    for (kind, name), obj in latest.items():
        live = kubectl.get(kind, name, ns)
        assert subset(obj["spec"], live["spec"]), (kind, name, live["spec"])


def subset(wanted: object, live: object) -> bool:
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(
            k in live and subset(v, live[k]) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(wanted) == len(live)
            and all(subset(w, x) for w, x in zip(wanted, live, strict=True))
        )
    return wanted == live


def test_the_training_sample_renders_its_gated_job():
    from botenv.render import training as render

    by_kind = {d["kind"]: d for d in docs("training.yaml")}
    spec = parse_training(
        {**by_kind["ModelTraining"], "metadata": {**by_kind["ModelTraining"]["metadata"]}},
        "rasa/rasa:3.6.21-full",
    )
    job = render.job(spec, keys=sorted(by_kind["ConfigMap"]["data"]), botenv_image="b", uid="u")
    steps = [c["name"] for c in job["spec"]["template"]["spec"]["initContainers"]]
    assert steps == ["validate", "train", "test", "gates"]
    (tag,) = [d for d in docs("experimental.yaml") if d["kind"] == "ModelTag"]
    # it moves experimental, which lets trainings move it, in the storage it reads from
    assert tag["metadata"]["name"] == spec.tag
    assert tag["spec"]["trainings"] == {"allowed": True}
    assert tag["spec"]["storage"] == spec.output.block()
