"""The people's CLI without a cluster: summaries, tables, the rollback target, the promote
source, the wait verdict, GitOps detection, and the parser's exit codes and names."""

from __future__ import annotations

import datetime

import pytest

from botenv import cli
from botenv.cli import decisions, output, shared

NOW = datetime.datetime(2024, 6, 12, 12, 0, 0, tzinfo=datetime.UTC)


def cond(type_, status, reason="", message=""):
    return {"type": type_, "status": status, "reason": reason, "message": message}


def benv(
    name,
    *,
    tag="",
    model="",
    conditions=(),
    replicas=None,
    ready=0,
    ns="bots",
    generation=1,
    observed=1,
):
    spec = {"modelTag": tag} if tag else {}
    if replicas is not None:
        spec["replicas"] = replicas
    status = {
        "observedGeneration": observed,
        "readyReplicas": ready,
        "conditions": list(conditions),
    }
    if model:
        status["model"] = {"tag": tag or name, "name": model, "digest": "d" * 32}
    return {
        "metadata": {"name": name, "namespace": ns, "generation": generation},
        "spec": spec,
        "status": status,
    }


def mtag(
    name,
    model,
    *,
    status_model=None,
    history=(),
    ready=("True", "Resolved", ""),
    ns="bots",
    environments=(),
    generation=1,
    observed=1,
    actions="",
    **meta,
):
    status_model = model if status_model is None else status_model
    status = {
        "observedGeneration": observed,
        "environments": list(environments),
        "history": [dict(h) for h in history],
        "conditions": [cond("Ready", *ready)] if ready else [],
    }
    if status_model:
        status.update(
            model=status_model, digest="0123456789abcdef0123", resolvedAt="2024-06-12T11:55:00Z"
        )
    spec = {"model": model, "storage": {"provider": "local", "path": "/models"}}
    if actions:
        spec["actionServerImage"] = actions
        if status_model == model:
            status["actionServerImage"] = actions
    return {
        "metadata": {"name": name, "namespace": ns, "generation": generation, **meta},
        "spec": spec,
        "status": status,
    }


def entry(model, resolved="2024-06-01T00:00:00Z", digest="feedbeef"):
    return {"model": model, "digest": digest, "resolvedAt": resolved}


# --- summaries and tables -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "state", "reason"),
    [
        (
            [
                cond("Ready", "True", "Ready", "2 of 2 replicas serve the model"),
                cond("Progressing", "False", "RolloutComplete"),
                cond("Degraded", "False"),
            ],
            "Ready",
            "Ready",
        ),
        (
            [
                cond("Ready", "False", "SecretMissing", "Secret 'auth' not found"),
                cond("Progressing", "False", "RolloutComplete"),
                cond("Degraded", "True", "SecretMissing", "Secret 'auth' not found"),
            ],
            "Degraded",
            "SecretMissing",
        ),
        (
            [
                cond("Ready", "False", "RollingOut", "rolling out: 1 of 2 replicas updated"),
                cond("Progressing", "True", "RollingOut", "rolling out: 1 of 2 replicas updated"),
                cond("Degraded", "False", "AsExpected"),
            ],
            "Progressing",
            "RollingOut",
        ),
        ([], "Pending", "NotObserved"),
    ],
)
def test_environment_summary_state(conditions, state, reason):
    row = output.environment_summary(benv("production", model="m.tar.gz", conditions=conditions))
    assert (row["state"], row["reason"]) == (state, reason)
    assert row["tag"] == "production"  # the tag defaults to the environment's name
    assert row["replicas"] == 1


def test_environment_summary_of_an_autoscaled_environment_counts_its_pods():
    body = benv("production", replicas=1, ready=3)
    body["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 6}
    body["status"]["replicas"] = 4  # the HPA scaled the Deployment; spec.replicas is ignored
    assert output.environment_summary(body)["replicas"] == 4


def test_status_text_shows_environments_tags_and_why_not_ready():
    environments = [
        output.environment_summary(
            benv(
                "production",
                model="20190506-100418.tar.gz",
                replicas=2,
                ready=2,
                conditions=[cond("Ready", "True", "Ready", "2 of 2 replicas serve the model")],
            )
        ),
        output.environment_summary(
            benv(
                "worker",
                tag="production",
                model="20190506-100418.tar.gz",
                conditions=[
                    cond("Ready", "False", "SecretMissing", "Secret 'mq' not found"),
                    cond("Degraded", "True", "SecretMissing", "Secret 'mq' not found"),
                ],
            )
        ),
    ]
    tags = [
        output.tag_summary(
            mtag("production", "20190506-100418.tar.gz", environments=["production", "worker"])
        ),
        output.tag_summary(
            mtag(
                "experimental",
                "missing.tar.gz",
                status_model="m1.tar.gz",
                ready=("False", "ModelNotFound", "model 'missing.tar.gz' not found"),
            )
        ),
    ]
    text = output.status_text(environments, tags, namespace="bots", now=NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["ENVIRONMENT", "TAG", "MODEL", "STATUS", "READY"]
    assert lines[1].split() == [
        "production",
        "production",
        "20190506-100418.tar.gz",
        "Ready",
        "2/2",
    ]
    assert lines[2].split() == [
        "worker",
        "production",
        "20190506-100418.tar.gz",
        "Degraded",
        "(SecretMissing)",
        "0/1",
    ]
    # Columns line up: every row starts its MODEL at the same offset.
    assert {line.index("20190506") for line in lines[1:3]} == {lines[0].index("MODEL")}
    tag_header = next(i for i, line in enumerate(lines) if line.startswith("TAG"))
    assert lines[tag_header].split() == [
        "TAG",
        "MODEL",
        "DIGEST",
        "RESOLVED",
        "PROMOTED",
        "READY",
        "ENVIRONMENTS",
    ]
    production = lines[tag_header + 1]
    # Its environments do not serve its model yet (no status.servedAt).
    assert production[lines[tag_header].index("PROMOTED") :].split()[0] == "rolling"
    assert "0123456789ab " in production and "0123456789abc" not in production
    assert "2024-06-12T11:55:00Z (5m ago)" in production
    assert production.split()[-3:] == ["True", "production,", "worker"]
    experimental = lines[tag_header + 2]
    assert "m1.tar.gz (moving to missing.tar.gz)" in experimental
    assert "False (ModelNotFound)" in experimental
    assert "Not ready, or warned:" in lines
    assert "  environment worker: Degraded SecretMissing: Secret 'mq' not found" in lines
    assert "  tag experimental: ModelNotFound: model 'missing.tar.gz' not found" in lines


def test_status_text_all_namespaces_and_empty():
    rows = [output.environment_summary(benv("a", model="m", ns="team-1"))]
    text = output.status_text(rows, [], namespace=None, now=NOW)
    assert text.splitlines()[0].split()[:2] == ["NAMESPACE", "ENVIRONMENT"]
    assert text.splitlines()[1].split()[:2] == ["team-1", "a"]
    assert "No ModelTags in any namespace." in text
    assert "environment team-1/a: Pending NotObserved" in text
    empty = output.status_text([], [], namespace="bots", now=NOW)
    assert "No BotEnvironments in namespace 'bots'." in empty


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(5, "5s"), (125, "2m"), (7200, "2h"), (3 * 86400 + 5, "3d"), (-3, "0s")],
)
def test_age(seconds, expected):
    then = (NOW - datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert output.age(then, NOW) == expected
    assert output.age("not a time", NOW) == ""


def test_table_pads_columns_and_strips_trailing_space():
    assert output.table(["A", "BB"], [["xyz", ""], ["1", "2"]]).splitlines() == [
        "A    BB",
        "xyz",
        "1    2",
    ]


# --- history and rollback ------------------------------------------------------------------


def test_history_marks_the_current_model_first():
    body = mtag("production", "m3.tar.gz", history=[entry("m2.tar.gz"), entry("m1.tar.gz")])
    rows = output.history_rows(body)
    assert [(r["model"], r["current"]) for r in rows] == [
        ("m3.tar.gz", True),
        ("m2.tar.gz", False),
        ("m1.tar.gz", False),
    ]
    lines = output.history_text(body, NOW).splitlines()
    assert lines[0].split() == ["MODEL", "DIGEST", "RESOLVED", "AT", "PROMOTED"]
    assert lines[1].startswith("*  m3.tar.gz")
    assert lines[2].startswith("   m2.tar.gz  feedbeef")


def test_history_text_says_when_there_is_nothing_to_roll_back_to():
    text = output.history_text(mtag("t", "m1.tar.gz"), NOW)
    assert "nothing to roll back to" in text
    unresolved = mtag("t", "m1.tar.gz", status_model="", ready=None)
    assert "has not resolved a model yet" in output.history_text(unresolved, NOW)


def test_rollback_target_is_the_newest_entry_with_another_model():
    # m3 was re-uploaded (same name, new digest): that entry is no rollback target.
    body = mtag(
        "t", "m3.tar.gz", history=[entry("m3.tar.gz"), entry("m2.tar.gz"), entry("m1.tar.gz")]
    )
    target = decisions.rollback_target(body)
    assert target.model == "m2.tar.gz"
    assert "previous model in status.history" in target.why


def test_rollback_target_after_a_rollback_is_the_model_rolled_back_from():
    # History after m1 -> m2 -> rollback to m1: newest first.
    body = mtag("t", "m1.tar.gz", history=[entry("m2.tar.gz"), entry("m1.tar.gz")])
    assert decisions.rollback_target(body).model == "m2.tar.gz"


def test_rollback_of_an_unresolved_move_returns_to_the_model_in_force():
    body = mtag(
        "t",
        "missing.tar.gz",
        status_model="m2.tar.gz",
        history=[entry("m1.tar.gz")],
        ready=("False", "ModelNotFound", "gone"),
    )
    target = decisions.rollback_target(body)
    assert target.model == "m2.tar.gz"
    assert "never resolved" in target.why


def test_rollback_target_carries_the_action_server_image_of_its_entry():
    body = mtag(
        "t",
        "m2.tar.gz",
        actions="acme/actions:2",
        history=[{**entry("m1.tar.gz"), "actionServerImage": "acme/actions:1"}],
    )
    target = decisions.rollback_target(body)
    assert (target.model, target.action_server_image) == ("m1.tar.gz", "acme/actions:1")
    assert (
        decisions.image_change("acme/actions:2", target.action_server_image)
        == "action server image: acme/actions:2 -> acme/actions:1"
    )
    assert decisions.image_change("acme/actions:2", "acme/actions:2") == ""
    assert decisions.image_change("acme/actions:2", None) == ""
    assert (
        decisions.image_change("acme/actions:2", "")
        == "action server image: acme/actions:2 -> (each environment its own)"
    )
    source = mtag("experimental", "m3.tar.gz", actions="acme/actions:3")
    assert decisions.source_action_image(source) == "acme/actions:3"


@pytest.mark.parametrize(
    "body",
    [
        mtag("t", "m1.tar.gz"),
        mtag("t", "m1.tar.gz", history=[entry("m1.tar.gz")]),
        mtag("t", "m1.tar.gz", status_model="", ready=None),
    ],
)
def test_rollback_without_an_earlier_model_is_refused(body):
    with pytest.raises(
        decisions.Refused,
        match="modeltag 't' in namespace 'bots' has no earlier model in status.history",
    ):
        decisions.rollback_target(body)


# --- promote ------------------------------------------------------------------------------


def test_promote_source_is_the_resolved_model():
    body = mtag("experimental", "m2.tar.gz")
    assert decisions.promote_source(body) == "m2.tar.gz"
    body["status"].pop("model")
    assert decisions.promote_source(body) == "m2.tar.gz"  # falls back to spec.model


@pytest.mark.parametrize(
    ("ready", "message"),
    [
        (("False", "ModelNotFound", "model 'x' not found"), "ModelNotFound: model 'x' not found"),
        (None, "has not resolved it yet"),
    ],
)
def test_promote_source_refuses_a_tag_that_is_not_ready(ready, message):
    body = mtag("experimental", "x.tar.gz", status_model="m1.tar.gz", ready=ready)
    with pytest.raises(decisions.Refused, match="is not Ready") as exc:
        decisions.promote_source(body)
    assert message in str(exc.value)


def test_move_describes_the_change():
    move = decisions.Move("bots", "production", "m1.tar.gz", "m2.tar.gz")
    assert move.describe() == (
        "modeltag 'production' in namespace 'bots': spec.model m1.tar.gz -> m2.tar.gz"
    )
    same = decisions.Move("bots", "production", "m2.tar.gz", "m2.tar.gz")
    assert not same.changes and "already points to m2.tar.gz" in same.describe()


@pytest.mark.parametrize(
    ("meta", "owner"),
    [
        ({"labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}, "Flux Kustomization"),
        ({"labels": {"argocd.argoproj.io/instance": "bots"}}, "Argo CD Application"),
        (
            {"annotations": {"argocd.argoproj.io/tracking-id": "bots:botenv.dev/ModelTag:bots/t"}},
            "Argo CD Application",
        ),
        (
            {
                "managedFields": [
                    {
                        "manager": "kustomize-controller",
                        "operation": "Apply",
                        "fieldsV1": {"f:spec": {"f:model": {}, "f:storage": {}}},
                    }
                ]
            },
            "field manager 'kustomize-controller'",
        ),
        (
            {
                "managedFields": [
                    {
                        "manager": "kubectl-client-side-apply",
                        "operation": "Update",
                        "fieldsV1": {"f:spec": {"f:model": {}}},
                    },
                    {
                        "manager": "botenv-cli",
                        "operation": "Apply",
                        "fieldsV1": {"f:spec": {"f:model": {}}},
                    },
                    {
                        "manager": "helm",
                        "operation": "Apply",
                        "fieldsV1": {"f:spec": {"f:storage": {}}},
                    },
                ]
            },
            "",
        ),
    ],
)
def test_gitops_owner(meta, owner):
    found = decisions.gitops_owner(mtag("t", "m.tar.gz", **meta))
    assert (owner in found) if owner else found == ""


def test_wait_state():
    moved = mtag("t", "m2.tar.gz", generation=4, observed=4)
    assert decisions.wait_state(moved, "m2.tar.gz", 4).done
    behind = mtag("t", "m2.tar.gz", status_model="m1.tar.gz", generation=4, observed=3)
    assert "has not seen generation 4" in decisions.wait_state(behind, "m2.tar.gz", 4).waiting
    missing = mtag(
        "t",
        "m2.tar.gz",
        status_model="m1.tar.gz",
        generation=4,
        observed=4,
        ready=("False", "ModelNotFound", "model 'm2.tar.gz' not found"),
    )
    state = decisions.wait_state(missing, "m2.tar.gz", 4)
    assert not state.done and state.failed == (
        "Ready=False ModelNotFound: model 'm2.tar.gz' not found"
    )
    flaky = mtag(
        "t",
        "m2.tar.gz",
        status_model="m1.tar.gz",
        generation=4,
        observed=4,
        ready=("False", "StorageUnavailable", "timed out"),
    )
    state = decisions.wait_state(flaky, "m2.tar.gz", 4)
    assert not state.failed and "StorageUnavailable" in state.waiting


# --- parser and exit codes ----------------------------------------------------------------


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for line in (
        "0  ok",
        "2  usage error",
        "3  not found",
        "4  forbidden",
        "5  cannot reach the cluster",
    ):
        assert line in out
    for command in ("status", "promote", "rollback", "history", "operator", "model-server"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [
        ["promote", "production"],  # neither --model nor --from
        ["promote", "production", "--model", "m", "--from", "other"],  # both
        ["rollback"],
        ["status", "-o", "xml"],
        ["promote", "production", "--model", "m", "--wait", "--timeout", "0"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == shared.EXIT_USAGE


def test_kubectl_plugin_names_itself_kubectl_botenv(capsys):
    with pytest.raises(SystemExit):
        cli.kubectl_main(["promote", "--help"])
    assert capsys.readouterr().out.startswith("usage: kubectl botenv promote ")
    with pytest.raises(SystemExit):
        cli.main(["promote", "--help"])
    assert capsys.readouterr().out.startswith("usage: botenv promote ")


def test_operator_subcommand_is_unchanged():
    args = cli.build_parser().parse_args(["operator", "-n", "a", "-n", "b"])
    assert args.namespace == ["a", "b"] and args.func.__name__ == "_operator"


def test_no_kubeconfig_exits_5(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main(["status"]) == shared.EXIT_UNREACHABLE
    assert "no kubeconfig" in capsys.readouterr().err
    missing = tmp_path / "nope.kubeconfig"
    assert cli.main(["history", "t", "--kubeconfig", str(missing)]) == 5
    assert f"kubeconfig '{missing}' not found" in capsys.readouterr().err


def kubeconfig(path, server, namespace=""):
    ns = f"    namespace: {namespace}\n" if namespace else ""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster:\n    server: {server}\n"
        "users:\n- name: u\n  user:\n    token: t\n"
        f"contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n{ns}"
        "current-context: ctx\n"
    )
    return path


def test_unreachable_cluster_and_unknown_context_exit_5(tmp_path, capsys):
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    config = kubeconfig(tmp_path / "config", "https://127.0.0.1:1")
    assert cli.main(["status", "--kubeconfig", str(config)]) == 5
    assert "cannot reach the cluster at https://127.0.0.1:1" in capsys.readouterr().err
    assert cli.main(["status", "--kubeconfig", str(config), "--context", "other"]) == 5
    assert "context 'other' not found" in capsys.readouterr().err


def test_namespace_defaults_to_the_kubeconfig_context(tmp_path):
    from botenv.kube.client import connect

    _, namespace = connect(str(kubeconfig(tmp_path / "a", "https://127.0.0.1:1", "bots")))
    assert namespace == "bots"
    _, namespace = connect(str(kubeconfig(tmp_path / "b", "https://127.0.0.1:1")))
    assert namespace == "default"


def _environment(model: str, ready: str = "True", progressing: str = "False", **status):
    return {
        "status": {
            "model": {"name": model},
            "conditions": [
                {"type": "Ready", "status": ready, "reason": "Ready" if ready == "True" else "X"},
                {
                    "type": "Progressing",
                    "status": progressing,
                    "message": "rolling to model m2.tar.gz",
                },
            ],
            **status,
        }
    }


def test_environment_wait_until_every_replica_serves_the_model():
    served = [{"name": "m2.tar.gz", "replicas": 2}]
    assert (
        decisions.environment_wait(_environment("m2.tar.gz", servedModels=served), "m2.tar.gz")
        == ""
    )
    assert decisions.environment_wait(_environment("m2.tar.gz"), "m2.tar.gz") == ""
    # Still on the old model, rolling, or a replica on another model: not yet.
    assert (
        decisions.environment_wait(_environment("m1.tar.gz"), "m2.tar.gz") == "on m1.tar.gz (Ready)"
    )
    assert (
        decisions.environment_wait(_environment("m2.tar.gz", progressing="True"), "m2.tar.gz")
        == "rolling to model m2.tar.gz"
    )
    mixed = [{"name": "m2.tar.gz", "replicas": 1}, {"name": "m1.tar.gz", "replicas": 1}]
    assert decisions.environment_wait(_environment("m2.tar.gz", servedModels=mixed), "m2.tar.gz")
    assert decisions.environment_wait(_environment("m2.tar.gz", ready="False"), "m2.tar.gz")
    assert decisions.serving(_environment("m1.tar.gz"))
    assert not decisions.serving(_environment("m1.tar.gz", ready="False"))
    assert not decisions.serving({})


def test_chat_keeps_the_first_way_that_answers_and_names_every_way_that_failed():
    from botenv.cli.chat import Channel
    from botenv.cli.shared import CliError

    calls = []

    def refused(payload):
        calls.append("proxy")
        raise OSError("503 no endpoints available")

    def pod(payload):
        calls.append("pod")
        return [{"recipient_id": payload["sender"], "text": "hi " + payload["message"]}]

    channel = Channel([("proxy", refused), ("pod", pod)])
    assert channel.send("s", "a") == [{"recipient_id": "s", "text": "hi a"}]
    assert channel.send("s", "b") == [{"recipient_id": "s", "text": "hi b"}]
    assert calls == ["proxy", "pod", "pod"]  # the proxy is not tried again

    def down(payload):
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(CliError) as failed:
        Channel([("proxy", refused), ("pod at http://10.1.2.3:5005", down)]).send("s", "a")
    assert str(failed.value) == (
        "proxy: 503 no endpoints available; pod at http://10.1.2.3:5005: connection refused"
    )
    with pytest.raises(CliError, match="answered 'oops', not a message list"):
        Channel([("url", lambda payload: "oops")]).send("s", "a")


def test_status_marks_the_environments_that_refuse_the_tags_model():
    body = mtag("production", "old.tar.gz", environments=["canary", "production", "legacy"])
    body["status"]["rasaVersion"] = "3.5.4"
    body["status"]["refusedBy"] = [
        {"environment": "canary", "message": "trained with Rasa 3.5.4, but ..."},
        {"environment": "production", "message": "trained with Rasa 3.5.4, but ..."},
    ]
    text = output.status_text([], [output.tag_summary(body)], namespace="bots", now=NOW)
    row = next(line for line in text.splitlines() if line.startswith("production"))
    assert row.endswith("canary (refused), production (refused), legacy")
    wide = output.status_text([], [output.tag_summary(body)], namespace="bots", now=NOW, wide=True)
    header, row = (line.split() for line in wide.splitlines()[-2:])
    assert header[-2:] == ["MODEL", "RASA"] and row[-1] == "3.5.4"
    assert decisions.refusals(body) == {
        "canary": "trained with Rasa 3.5.4, but ...",
        "production": "trained with Rasa 3.5.4, but ...",
    }
