"""The Helm chart, checked with a real Helm 3 and the upstream Kubernetes schemas: lint, render,
values schema, the pods' contract with the `botenv` CLI, the exact RBAC it grants, and the
generated copies (chart CRDs, manifests/install.yaml) being fresh."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.install.conftest import find, template_args
from tests.support.helm import CHART, REPO_ROOT

pytestmark = pytest.mark.install

# The oldest and the newest Kubernetes versions kubernetes-validate has schemas for (the API
# server the cluster tests run is older: it is checked by applying, in test_apply.py).
SCHEMA_VERSIONS = ("1.25.0", "1.28.0", "1.37.0")
# Fields of a CRD's CEL rules (x-kubernetes-validations) newer than 1.25: messageExpression
# (1.27), fieldPath and reason (1.28). A 1.25-1.27 server drops them when the CRDs are applied
# with --validate=false (README "Supported Kubernetes versions"); from 1.28 on they validate.
CEL_FIELDS_SINCE_1_28 = ("fieldPath", "messageExpression", "reason")
# Kinds defined by CRDs that the upstream schemas do not know: the only ones not validated.
CRD_TYPED_KINDS = {"ServiceMonitor", "PrometheusRule"}
VALUE_SETS = (None, "namespaces.yaml", "full.yaml")


def rules(obj: dict) -> list[tuple]:
    """A Role's rules as comparable tuples."""
    return sorted(
        (
            tuple(r.get("apiGroups", ())),
            tuple(r.get("resources", ())),
            tuple(r.get("resourceNames", ())),
            tuple(r["verbs"]),
        )
        for r in obj["rules"]
    )


def rule(
    groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None
) -> tuple:
    return (tuple(groups), tuple(resources), tuple(names or ()), tuple(verbs))


# What each component may do, and nothing more (why: the comments in the chart's
# templates/rbac-*.yaml and the README's "Permissions"). A change here must be deliberate.
OPERATOR_NAMESPACED = [
    rule(
        ["botenv.dev"], ["botenvironments", "modeltags", "modeltrainings"], ["get", "list", "watch"]
    ),
    rule(
        ["botenv.dev"],
        ["botenvironments/status", "modeltags/status", "modeltrainings/status"],
        ["patch"],
    ),
    # a ModelTraining's spec.tag: the tag is created or its spec.model moved
    rule(["botenv.dev"], ["modeltags"], ["create", "patch"]),
    rule(["botenv.dev"], ["botenvironments/finalizers", "modeltrainings/finalizers"], ["update"]),
    rule(["batch"], ["jobs"], ["get", "list", "watch", "create", "patch", "delete"]),
    rule([""], ["configmaps"], ["get", "list", "watch", "create", "patch"]),
    # delete: an action server (Deployment + Service) whose spec.actionServer was removed.
    rule([""], ["services"], ["get", "list", "watch", "create", "patch", "delete"]),
    rule(["apps"], ["deployments"], ["get", "list", "watch", "create", "patch", "delete"]),
    # delete: the HPA of autoscaling removed from a spec; the budget of a fleet that can run
    # only one replica (or whose budget was turned off).
    rule(
        ["autoscaling"],
        ["horizontalpodautoscalers"],
        ["get", "list", "watch", "create", "patch", "delete"],
    ),
    rule(
        ["policy"], ["poddisruptionbudgets"], ["get", "list", "watch", "create", "patch", "delete"]
    ),
    rule([""], ["pods"], ["get", "list", "watch"]),
    # spec.ingress and spec.httpRoute; delete: the field was removed from the spec.
    rule(
        ["networking.k8s.io"], ["ingresses"], ["get", "list", "watch", "create", "patch", "delete"]
    ),
    rule(
        ["gateway.networking.k8s.io"],
        ["httproutes"],
        ["get", "list", "watch", "create", "patch", "delete"],
    ),
    rule([""], ["secrets"], ["get", "list", "watch", "create", "patch", "delete"]),
    rule([""], ["events"], ["create"]),
]
CRD_READ = [rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["list", "watch"])]
# With a namespace list only: kopf follows the listed Namespaces.
NAMESPACE_READ = [rule([""], ["namespaces"], ["list", "watch"])]
LEASE = [
    rule(["coordination.k8s.io"], ["leases"], ["create"]),
    rule(["coordination.k8s.io"], ["leases"], ["get", "update"], ["botenv-operator"]),
]
MODEL_SERVER_NAMESPACED = [
    rule(["botenv.dev"], ["modeltags"], ["get", "list", "watch"]),
    rule(["botenv.dev"], ["botenvironments"], ["get", "list", "watch"]),
    # A tag's storage Secret, by name: no list or watch of Secrets at all.
    rule([""], ["secrets"], ["get"]),
]


def test_helm_is_a_real_helm_3(helm):
    assert helm("version", "--short").stdout.startswith("v3.17.3")


@pytest.mark.parametrize("values", VALUE_SETS)
def test_lint_strict(helm, values):
    args = ["lint", "--strict", str(CHART)]
    if values:
        args += ["-f", str(Path(__file__).parent / "values" / values)]
    proc = helm(*args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def _drop_keys(node: object, keys: tuple[str, ...], inside: str, within: bool = False) -> None:
    """Remove keys from the rule objects of every `inside` list under node."""
    if isinstance(node, dict):
        if within:
            for key in keys:
                node.pop(key, None)
        for key, value in node.items():
            _drop_keys(value, keys, inside, key == inside)
    elif isinstance(node, list):
        for item in node:
            _drop_keys(item, keys, inside, within)


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS)
def test_template_passes_kubernetes_validate_strict(helm, values, version):
    rendered = helm(*template_args("botenv", "botenv-system", values, "--include-crds")).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d]

    def validate(text: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(Path(sys.executable).with_name("kubernetes-validate")),
                "--strict",
                "-k",
                version,
                "-",
            ],
            input=text,
            capture_output=True,
            text=True,
            timeout=120,
        )

    if tuple(map(int, version.split("."))) < (1, 28):
        # The rules' newer fields are the only thing such a server does not know ...
        errors = re.findall(r"^ERROR - .*$", validate(rendered).stdout, re.MULTILINE)
        assert errors, f"{version} knows every field of the CEL rules?"
        for line in errors:
            unexpected = re.search(r"\((.*) (?:was|were) unexpected\)", line)
            assert "x-kubernetes-validations" in line and unexpected, line
            assert set(re.findall(r"'(\w+)'", unexpected.group(1))) <= set(CEL_FIELDS_SINCE_1_28), (
                line
            )
        # ... and without them (as such a server stores the CRDs) everything validates.
        for obj in objects:
            if obj["kind"] == "CustomResourceDefinition":
                _drop_keys(obj, CEL_FIELDS_SINCE_1_28, inside="x-kubernetes-validations")
        rendered = yaml.safe_dump_all(objects)
    proc = validate(rendered)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ERROR" not in out, out
    passed = re.findall(r"^INFO - passed for resource (\S+) ", out, re.MULTILINE)
    builtin = [o for o in objects if o["kind"] not in CRD_TYPED_KINDS]
    assert sorted(passed) == sorted(
        f"{o['kind'].lower()}/{o['metadata']['name']}" for o in builtin
    ), out
    # Only the CRD-typed objects lack a schema, and they are skipped by kind.
    missing = re.findall(r"Couldn't find schema for kind (\S+)", out)
    assert sorted(missing) == sorted(o["kind"] for o in objects if o["kind"] in CRD_TYPED_KINDS), (
        out
    )
    assert {o["kind"] for o in objects} >= {
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
    }


def write_values(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("args", "field", "why"),
    [
        (
            ["--set", "operator.replicas=two"],
            "operator.replicas",
            "Expected: integer, given: string",
        ),
        (
            ["--set", "modelServer.replicas=-1"],
            "modelServer.replicas",
            "greater than or equal to 0",
        ),
        (["--set", "watch.namespaces=bots"], "watch.namespaces", "Expected: array, given: string"),
        (
            ["VALUES", "watch: {namespaces: {bots: true}}"],
            "watch.namespaces",
            "Expected: array, given: object",
        ),
        (
            ["--set", "watch.namespaces[0]=Not_A_Namespace"],
            "watch.namespaces.0",
            "Does not match pattern",
        ),
        (["--set", "replicas=2"], "(root)", "Additional property replicas is not allowed"),
        (
            ["--set", "operator.resource.limits.cpu=1"],
            "operator",
            "Additional property resource is not allowed",
        ),
        (["--set", "image.pullPolicy=Sometimes"], "image.pullPolicy", "must be one of"),
        (
            ["--set", "modelServer.service.type=Ingress"],
            "modelServer.service.type",
            "must be one of",
        ),
        (
            ["--set", "modelServer.cache.maxBytes=lots"],
            "modelServer.cache.maxBytes",
            "Does not match pattern",
        ),
        (["--set", "rbac.userRoles=maybe"], "rbac.userRoles", "Expected: boolean, given: string"),
        (
            ["--set", "modelServer.connections.headerTimeoutSeconds=0"],
            "modelServer.connections.headerTimeoutSeconds",
            "greater than 0",
        ),
        (
            ["--set", "modelServer.connections.maxConnections=0"],
            "modelServer.connections.maxConnections",
            "greater than or equal to 1",
        ),
        (
            ["--set", "modelServer.connections.idleSeconds=5"],
            "modelServer.connections",
            "Additional property idleSeconds is not allowed",
        ),
        (
            ["--set", "operator.settings.workers=0"],
            "operator.settings.workers",
            "greater than or equal to 1",
        ),
        (["--set", "image.digest=latest"], "image.digest", "Does not match pattern"),
    ],
)
def test_values_schema_rejects_bad_values(helm, tmp_path, args, field, why):
    if args[0] == "VALUES":
        args = ["-f", str(write_values(tmp_path, args[1]))]
    proc = helm("template", "botenv", str(CHART), *args, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert f"- {field}: " in proc.stderr and why in proc.stderr, proc.stderr


def test_chart_follows_the_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]
    assert chart["version"] == project["version"]


def containers(objects: list[dict], deployment: str) -> dict:
    pod = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_operator_deployment_contract(render):
    objects = render()
    deployment = find(objects, "Deployment", "botenv-operator", "botenv-system")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "botenv-operator"
    container = containers(objects, "botenv-operator")
    assert container["image"] == "ghcr.io/botenv/botenv:0.1.0"
    assert "command" not in container  # the image's entrypoint: botenv
    assert container["args"] == [
        "operator",
        "--leader-elect",
        "--health-address",
        "0.0.0.0:8081",
        "--log-format",
        "text",
        "--log-level",
        "info",
    ]
    env = env_of(container)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    service = find(objects, "Service", "botenv-model-server", "botenv-system")
    port = service["spec"]["ports"][0]["port"]
    assert env["BOTENV_MODEL_SERVER_URL"] == (
        f"http://botenv-model-server.botenv-system.svc:{port}"
    )
    # The operator's built-in default is the same URL: a default install needs no setting.
    from botenv.settings import Settings

    assert env["BOTENV_MODEL_SERVER_URL"] == Settings().model_server_url
    assert "BOTENV_NAMESPACES" not in env
    # Not /readyz, which fails on a standby: a rolling update waits for the new pod to be
    # ready, and it stands by until the old one stops.
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in container["ports"]


def test_model_server_deployment_contract(render):
    objects = render()
    pod = find(objects, "Deployment", "botenv-model-server")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "botenv-model-server"
    container = containers(objects, "botenv-model-server")
    assert container["args"] == [
        "model-server",
        "--port",
        "8080",
        "--cache-dir",
        "/var/cache/botenv/models",
        "--cache-max-bytes",
        "10Gi",
        "--header-timeout",
        "10",
        "--keepalive-timeout",
        "15",
        "--max-connections",
        "512",
        "--shutdown-delay",
        "5",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/var/cache/botenv/models"]]["emptyDir"] == {"sizeLimit": "12Gi"}
    service = find(objects, "Service", "botenv-model-server")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert (
        service["spec"]["selector"]
        == find(objects, "Deployment", "botenv-model-server")["spec"]["selector"]["matchLabels"]
    )
    assert not [o for o in objects if o["kind"] == "ServiceMonitor"]  # off by default


@pytest.mark.parametrize("values", VALUE_SETS)
def test_secure_defaults_on_both_pods(render, values):
    objects = render("botenv", "botenv-system", values)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == 2
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is True  # both talk to the API
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in sc
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]
        assert container["livenessProbe"] and container["readinessProbe"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert not pod.get("hostNetwork") and not pod.get("hostPID")


def test_namespace_list_scope(render):
    objects = render("botenv", "botenv-system", "namespaces.yaml")
    watched = ["install-team-a", "install-team-b"]
    operator = containers(objects, "botenv-operator")
    assert env_of(operator)["BOTENV_NAMESPACES"] == ",".join(watched)
    model_server = containers(objects, "botenv-model-server")
    assert model_server["args"][-4:] == ["-n", watched[0], "-n", watched[1]]
    for ns in watched:
        assert rules(find(objects, "Role", "botenv-operator", ns)) == sorted(OPERATOR_NAMESPACED)
        assert rules(find(objects, "Role", "botenv-model-server", ns)) == sorted(
            MODEL_SERVER_NAMESPACED
        )
        for name in ("botenv-operator", "botenv-model-server"):
            binding = find(objects, "RoleBinding", name, ns)
            assert binding["roleRef"] == {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": name,
            }
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": name, "namespace": "botenv-system"}
            ]
    # Cluster-wide: only the reads of CRDs and Namespaces that kopf needs.
    assert rules(find(objects, "ClusterRole", "botenv-operator")) == sorted(
        CRD_READ + NAMESPACE_READ
    )
    assert rules(find(objects, "ClusterRole", "botenv-model-server")) == sorted(
        CRD_READ + NAMESPACE_READ
    )
    assert rules(
        find(objects, "Role", "botenv-operator-leader-election", "botenv-system")
    ) == sorted(LEASE)
    roles = {
        (o["kind"], o["metadata"].get("namespace"))
        for o in objects
        if o["kind"] in ("Role", "RoleBinding")
    }
    assert roles == {(k, ns) for k in ("Role", "RoleBinding") for ns in [*watched, "botenv-system"]}


def test_all_namespaces_scope_rbac(render):
    objects = render()
    assert rules(find(objects, "ClusterRole", "botenv-operator")) == sorted(
        OPERATOR_NAMESPACED + CRD_READ
    )
    assert rules(find(objects, "ClusterRole", "botenv-model-server")) == sorted(
        MODEL_SERVER_NAMESPACED + CRD_READ
    )
    assert rules(
        find(objects, "Role", "botenv-operator-leader-election", "botenv-system")
    ) == sorted(LEASE)
    for name in ("botenv-operator", "botenv-model-server"):
        binding = find(objects, "ClusterRoleBinding", name)
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": name, "namespace": "botenv-system"}
        ]
    # Only the leader-election Role is namespaced in this scope.
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Role"] == [
        "botenv-operator-leader-election"
    ]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_no_wildcards_and_deletes_only_action_servers(render, values):
    objects = render("botenv", "botenv-system", values)
    component_roles = [
        o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
        and o["metadata"]["labels"]["app.kubernetes.io/component"] in ("operator", "model-server")
    ]
    assert component_roles
    for role in component_roles:
        for r in role["rules"]:
            assert "*" not in r["verbs"] + r["resources"] + r["apiGroups"], role
            assert not {"deletecollection", "escalate", "bind", "impersonate"} & set(r["verbs"]), (
                role
            )
            if "delete" in r["verbs"]:
                # Secrets: only its own pull-token Secrets whose environment is gone
                # (tests/cluster/test_pull_tokens.py), by uid precondition. Ingresses and
                # HTTPRoutes: an environment's, when spec.ingress / spec.httpRoute goes.
                assert r["resources"] in (
                    ["services"],
                    ["deployments"],
                    ["jobs"],
                    ["secrets"],
                    ["ingresses"],
                    ["httproutes"],
                    ["horizontalpodautoscalers"],
                    ["poddisruptionbudgets"],
                ), role
            if "pods" in r["resources"]:  # the operator reads Rasa pods; nobody writes them
                assert r["resources"] == ["pods"] and set(r["verbs"]) <= {"get", "list", "watch"}, (
                    role
                )
            if r["apiGroups"] == ["apiextensions.k8s.io"]:
                assert set(r["verbs"]) <= {"get", "list", "watch"}, role
        if role["metadata"]["labels"]["app.kubernetes.io/component"] == "model-server":
            assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in role["rules"])


def test_user_roles(render):
    objects = render()
    viewer = find(objects, "ClusterRole", "botenv-viewer")
    editor = find(objects, "ClusterRole", "botenv-editor")
    promoter = find(objects, "ClusterRole", "botenv-promoter")
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in promoter["metadata"]["labels"]
    assert rules(viewer) == sorted(
        [
            rule(
                ["botenv.dev"],
                ["botenvironments", "modeltags", "modeltrainings"],
                ["get", "list", "watch"],
            ),
            rule(["botenv.dev"], ["botenvironments/scale"], ["get"]),
        ]
    )
    assert rule(["botenv.dev"], ["botenvironments/scale"], ["get", "update", "patch"]) in rules(
        editor
    )
    assert rules(promoter) == sorted(
        [
            rule(["botenv.dev"], ["botenvironments", "modeltrainings"], ["get", "list", "watch"]),
            rule(["botenv.dev"], ["modeltags"], ["get", "list", "watch", "patch", "update"]),
        ]
    )
    for role in (viewer, editor, promoter):  # status is the operator's
        assert not any(res.endswith("/status") for r in role["rules"] for res in r["resources"])
    # scale is only the environments' (kubectl scale benv/NAME)
    subresources = {
        res for o in (viewer, editor, promoter) for r in o["rules"] for res in r["resources"]
    }
    assert {res for res in subresources if "/" in res} == {"botenvironments/scale"}
    off = render("botenv", "botenv-system", None, "--set", "rbac.userRoles=false")
    assert not [
        o for o in off if o["metadata"]["name"].endswith(("-viewer", "-editor", "-promoter"))
    ]


def test_rbac_create_false_renders_no_rbac(render):
    objects = render(
        "botenv",
        "botenv-system",
        None,
        "--set",
        "rbac.create=false",
        "--set",
        "rbac.userRoles=false",
    )
    assert not [o for o in objects if o["apiVersion"].startswith("rbac.")]


def test_full_values_render_every_option(render):
    objects = render("full", "botenv-system", "full.yaml")  # nameOverride: bot
    operator = containers(objects, "full-bot-operator")
    env = env_of(operator)
    assert env["BOTENV_DEFAULT_IMAGE"] == "rasa/rasa:3.6.21"
    assert env["BOTENV_HISTORY_LIMIT"] == "20"
    assert env["BOTENV_RESYNC_SECONDS"] == "120"
    assert env["BOTENV_RESOLVE_SECONDS"] == "30.5"
    assert env["BOTENV_WORKERS"] == "4"
    assert env["BOTENV_STALL_SECONDS"] == "600"
    args = operator["args"]
    assert args[args.index("--log-format") + 1] == "json"
    assert args[args.index("--log-level") + 1] == "warning"
    assert env["BOTENV_MODEL_SERVER_URL"] == ("http://full-bot-model-server.botenv-system.svc:9090")
    assert operator["args"][-1] == "--verbose"
    assert operator["image"].endswith("@sha256:" + "0" * 64)
    ms = find(objects, "Deployment", "full-bot-model-server")
    assert ms["spec"]["strategy"] == {"type": "Recreate"}  # a ReadWriteOnce cache claim
    volumes = {v["name"]: v for v in ms["spec"]["template"]["spec"]["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"] == {"claimName": "model-cache"}
    args = containers(objects, "full-bot-model-server")["args"]
    assert args[args.index("--header-timeout") + 1] == "2.5"
    assert args[args.index("--keepalive-timeout") + 1] == "60"
    assert args[args.index("--max-connections") + 1] == "2048"
    monitor = find(objects, "ServiceMonitor", "full-bot-model-server")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    operator_monitor = find(objects, "ServiceMonitor", "full-bot-operator")
    assert operator_monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    rule = find(objects, "PrometheusRule", "full-bot")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert any('job="botenv-operator-metrics"' in e for e in exprs)
    assert not any("botenv_leader" in e for e in exprs)  # noLeader: enabled false
    dashboard = find(objects, "ConfigMap", "full-bot-dashboard", "install-full-a")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "botenv"


def test_chart_crds_are_identical_copies():
    source = {p.name: p.read_bytes() for p in sorted((REPO_ROOT / "crds").glob("*.yaml"))}
    copy = {p.name: p.read_bytes() for p in sorted((CHART / "crds").iterdir())}
    assert source, "no CRDs in crds/"
    assert copy == source, (
        "helm/botenv/crds/ differs from crds/ (the single source): run scripts/render-manifests.sh"
    )


def test_install_yaml_is_fresh():
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "render-manifests.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"manifests/install.yaml or helm/botenv/crds is stale; run "
        f"scripts/render-manifests.sh\n{proc.stdout}{proc.stderr}"
    )


def test_install_yaml_is_the_chart_with_a_namespace(render):
    docs = [
        d for d in yaml.safe_load_all((REPO_ROOT / "manifests" / "install.yaml").read_text()) if d
    ]
    assert docs[0]["kind"] == "Namespace" and docs[0]["metadata"]["name"] == "botenv-system"
    kinds = [d["kind"] for d in docs]
    assert kinds.count("CustomResourceDefinition") == len(list((REPO_ROOT / "crds").glob("*.yaml")))
    chart = render("botenv", "botenv-system", None, "--include-crds")
    assert docs[1:] == chart
