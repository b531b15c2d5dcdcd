"""The GitOps files in gitops/: the argocd-cm patch carries the same health scripts as the
files, and the Argo CD and Flux examples point at the right kinds, paths and sources."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from botenv.controller import resolve, tag
from tests.gitops.argocd import SCRIPTS
from tests.gitops.reasons import reported

REPO = Path(__file__).resolve().parents[2]
GITOPS = REPO / "gitops"
PLACEHOLDER = "REPLACE-ME"


def docs(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((GITOPS / path).read_text()) if d]


def crd_kinds() -> dict[str, tuple[str, str]]:
    """kind -> (group, served version) of the CRDs in crds/."""
    kinds = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        version = next(v["name"] for v in crd["spec"]["versions"] if v["served"])
        kinds[crd["spec"]["names"]["kind"]] = (crd["spec"]["group"], version)
    return kinds


def test_one_health_script_per_kind_laid_out_as_argocd_resource_customizations():
    assert set(SCRIPTS) == set(crd_kinds())
    for kind, script in SCRIPTS.items():
        group, _ = crd_kinds()[kind]
        assert script == GITOPS / "argocd" / group / kind / "health.lua"
        assert script.is_file()


def test_argocd_cm_patch_carries_the_health_scripts_unchanged():
    (cm,) = docs("argocd/argocd-cm-patch.yaml")
    assert (cm["apiVersion"], cm["kind"], cm["metadata"]["name"]) == (
        "v1",
        "ConfigMap",
        "argocd-cm",
    )
    expected = {
        f"resource.customizations.health.{crd_kinds()[kind][0]}_{kind}": kind for kind in SCRIPTS
    }
    assert set(cm["data"]) == set(expected)
    for key, kind in expected.items():
        assert cm["data"][key] == SCRIPTS[kind].read_text(), (
            f"{key} in gitops/argocd/argocd-cm-patch.yaml differs from "
            f"{SCRIPTS[kind].relative_to(REPO)}: copy the file into the patch"
        )


def test_argocd_applications_install_the_chart_and_sync_the_bots_folder():
    apps = {d["metadata"]["name"]: d for d in docs("argocd/application.yaml")}
    assert set(apps) == {"botenv", "bots"}
    for app in apps.values():
        assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
        assert PLACEHOLDER in app["spec"]["source"]["repoURL"]
        assert app["spec"]["source"]["targetRevision"] == PLACEHOLDER
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert apps["botenv"]["spec"]["source"]["path"] == "helm/botenv"
    assert "helm" in apps["botenv"]["spec"]["source"]
    assert apps["bots"]["spec"]["source"]["path"] == "bots"
    assert "SkipDryRunOnMissingResource=true" in apps["bots"]["spec"]["syncPolicy"]["syncOptions"]


def test_flux_sources_release_and_kustomizations_fit_together():
    (repo,) = docs("flux/gitrepository.yaml")
    assert (repo["apiVersion"], repo["kind"]) == ("source.toolkit.fluxcd.io/v1", "GitRepository")
    assert PLACEHOLDER in repo["spec"]["url"]
    source = {"kind": "GitRepository", "name": repo["metadata"]["name"]}

    (release,) = docs("flux/release/helmrelease.yaml")
    assert (release["apiVersion"], release["kind"]) == ("helm.toolkit.fluxcd.io/v2", "HelmRelease")
    chart = release["spec"]["chart"]["spec"]
    assert chart["chart"] == "./helm/botenv"
    assert chart["sourceRef"] == {**source, "namespace": repo["metadata"]["namespace"]}
    assert release["spec"]["upgrade"]["crds"] == "CreateReplace"

    kustomizations = {d["metadata"]["name"]: d for d in docs("flux/kustomizations.yaml")}
    assert set(kustomizations) == {"botenv-operator", "bots"}
    for k in kustomizations.values():
        assert (k["apiVersion"], k["kind"]) == ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
        assert k["spec"]["sourceRef"] == source
        assert k["spec"]["wait"] is True
    operator = kustomizations["botenv-operator"]["spec"]
    assert (REPO / operator["path"]).resolve() == (GITOPS / "flux" / "release").resolve()
    bots = kustomizations["bots"]["spec"]
    assert bots["path"] == "./bots"
    assert bots["dependsOn"] == [{"name": "botenv-operator"}]


def test_flux_health_expressions_cover_both_kinds_and_the_retried_tagreported():
    (bots,) = [d for d in docs("flux/kustomizations.yaml") if d["metadata"]["name"] == "bots"]
    exprs = {e["kind"]: e for e in bots["spec"]["healthCheckExprs"]}
    kinds = crd_kinds()
    assert set(exprs) == set(kinds)
    for kind, e in exprs.items():
        group, version = kinds[kind]
        assert e["apiVersion"] == f"{group}/{version}"
        assert {"current", "failed"} <= set(e)
        assert "c.observedGeneration == metadata.generation" in e["current"]
    # The tag reasons that are not failures are exactly those botenv retries by itself.
    retried = {
        reason
        for _, reason, kw in reported(resolve, "Unresolved") + reported(tag, "Problem")
        if kw.get("retry")
    }
    listed = re.search(r"c\.reason in \[([^]]*)\]", exprs["ModelTag"]["failed"]).group(1)
    assert {r.strip(" '\"") for r in listed.split(",")} == retried


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(GITOPS).as_posix() for p in GITOPS.rglob("*") if p.is_file())
)
def test_no_machine_paths(path: str):
    text = (GITOPS / path).read_text()
    # Neither this checkout's location, the home directory nor the temp directory.
    for local in {str(REPO.parent), str(Path.home()), tempfile.gettempdir()} - {"/"}:
        assert local not in text, path


def test_chart_values_in_the_examples_pass_the_charts_schema():
    schema = json.loads((REPO / "helm" / "botenv" / "values.schema.json").read_text())
    (release,) = docs("flux/release/helmrelease.yaml")
    argocd = next(d for d in docs("argocd/application.yaml") if d["metadata"]["name"] == "botenv")
    for values in (release["spec"]["values"], argocd["spec"]["source"]["helm"]["valuesObject"]):
        jsonschema.validate(values, schema)
