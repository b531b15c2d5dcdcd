"""The Rasa Deployment and Service: args, env, probes, labels and pod-template annotations."""

from __future__ import annotations

import pytest

from botenv.api import SpecError
from botenv.render.deployment import (
    CONFIG_HASH_ANNOTATION,
    DIGEST_ANNOTATION,
    MODEL_ANNOTATION,
    SECRETS_HASH_ANNOTATION,
)
from tests.unit.builders import UID, environment, render_all, storage

ENDPOINTS_PATH = "/etc/botenv/rasa/endpoints.yml"
REDIS_LOCK = {"type": "redis", "host": "redis.db"}


def secret_ref(env_entry: dict) -> dict:
    assert "value" not in env_entry
    return env_entry["valueFrom"]["secretKeyRef"]


def flag(args: list[str], name: str) -> str:
    """The value following a flag; the flag must occur once."""
    assert args.count(name) == 1, args
    return args[args.index(name) + 1]


def volume_for_mount(pod: dict, container: dict, directory: str) -> dict:
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
    return next(v for v in pod["volumes"] if v["name"] == mount["name"])


# --- delivery ------------------------------------------------------------------------------


def test_pull_delivery_runs_the_api_with_the_endpoints_file_and_no_model():
    rendered = render_all(environment())
    args = rendered.container["args"]
    assert args[:2] == ["run", "--enable-api"]
    assert flag(args, "--endpoints") == ENDPOINTS_PATH
    assert "--model" not in args
    assert "--remote-storage" not in args
    # the endpoints file is the ConfigMap, mounted read-only
    config = volume_for_mount(rendered.pod, rendered.container, "/etc/botenv/rasa")
    assert config["configMap"]["name"] == rendered.configmap["metadata"]["name"]
    assert not {"BUCKET_NAME", "AWS_DEFAULT_REGION"} & set(rendered.env)


def test_rasa_listens_on_its_port_5005():
    rendered = render_all(environment())
    assert flag(rendered.container["args"], "--port") == "5005"
    assert rendered.container["ports"] == [
        {"name": "http", "containerPort": 5005, "protocol": "TCP"}
    ]


def test_remote_storage_s3():
    rendered = render_all(
        environment(delivery="remoteStorage"),
        model="20190506-100418.tar.gz",
        storage=storage(
            provider="s3",
            bucket="rasa-models",
            prefix="tenants/acme/",
            region="eu-west-1",
            endpoint="http://minio.minio:9000",
            secretRef={"name": "s3-credentials"},
        ),
    )
    args, env = rendered.container["args"], rendered.env
    assert flag(args, "--model") == "tenants/acme/20190506-100418.tar.gz"
    assert flag(args, "--remote-storage") == "aws"
    assert flag(args, "--endpoints") == ENDPOINTS_PATH
    assert env["BUCKET_NAME"]["value"] == "rasa-models"
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.minio:9000"
    assert secret_ref(env["AWS_ACCESS_KEY_ID"]) == {
        "name": "s3-credentials",
        "key": "AWS_ACCESS_KEY_ID",
    }
    assert secret_ref(env["AWS_SECRET_ACCESS_KEY"]) == {
        "name": "s3-credentials",
        "key": "AWS_SECRET_ACCESS_KEY",
    }


def test_remote_storage_s3_defaults_region_and_has_no_endpoint_or_keys_unless_given():
    rendered = render_all(
        environment(delivery="remoteStorage"),
        model="m.tar.gz",
        storage=storage(provider="s3", bucket="rasa-models"),
    )
    env = rendered.env
    assert flag(rendered.container["args"], "--model") == "m.tar.gz"
    assert env["AWS_DEFAULT_REGION"]["value"] == "us-east-1"  # Rasa 3.6 fails without one
    assert "AWS_ENDPOINT_URL" not in env
    assert "AWS_ACCESS_KEY_ID" not in env  # e.g. IRSA / instance role


def test_remote_storage_gcs_mounts_the_key_file():
    rendered = render_all(
        environment(delivery="remoteStorage"),
        model="m.tar.gz",
        storage=storage(provider="gcs", bucket="gcs-models", secretRef={"name": "gcs-key"}),
    )
    env = rendered.env
    assert flag(rendered.container["args"], "--remote-storage") == "gcs"
    assert env["BUCKET_NAME"]["value"] == "gcs-models"
    path = env["GOOGLE_APPLICATION_CREDENTIALS"]["value"]
    directory, filename = path.rsplit("/", 1)
    volume = volume_for_mount(rendered.pod, rendered.container, directory)
    assert volume["secret"]["secretName"] == "gcs-key"
    assert volume["secret"]["items"] == [{"key": "credentials.json", "path": filename}]


def test_remote_storage_azure():
    rendered = render_all(
        environment(delivery="remoteStorage"),
        model="m.tar.gz",
        storage=storage(provider="azure", bucket="container", secretRef={"name": "azure"}),
    )
    env = rendered.env
    assert flag(rendered.container["args"], "--remote-storage") == "azure"
    assert env["AZURE_CONTAINER"]["value"] == "container"
    assert secret_ref(env["AZURE_ACCOUNT_NAME"]) == {"name": "azure", "key": "AZURE_ACCOUNT_NAME"}
    assert secret_ref(env["AZURE_ACCOUNT_KEY"]) == {"name": "azure", "key": "AZURE_ACCOUNT_KEY"}


@pytest.mark.parametrize(
    "fields",
    [
        {"provider": "http", "url": "https://models.example.com/"},
        {"provider": "local", "path": "/models"},
    ],
)
def test_remote_storage_rejects_providers_rasa_cannot_load(fields):
    with pytest.raises(SpecError) as info:
        render_all(environment(delivery="remoteStorage"), storage=storage(**fields))
    assert info.value.problems[0].startswith("spec.delivery: ")
    assert fields["provider"] in info.value.problems[0]


def test_pull_delivery_never_injects_storage_credentials():
    rendered = render_all(
        environment(), storage=storage(provider="s3", bucket="b", secretRef={"name": "s3"})
    )
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(rendered.env)


# --- auth, cors, probes --------------------------------------------------------------------


def test_token_auth_comes_from_the_secret_via_the_env():
    rendered = render_all(
        environment(auth={"tokenSecretRef": {"name": "rasa-auth", "key": "token"}})
    )
    assert flag(rendered.container["args"], "--auth-token") == "$(BOTENV_AUTH_TOKEN)"
    assert secret_ref(rendered.env["BOTENV_AUTH_TOKEN"]) == {"name": "rasa-auth", "key": "token"}


def test_with_auth_readiness_runs_the_probe_script_not_an_http_get():
    rendered = render_all(environment(auth={"tokenSecretRef": {"name": "rasa-auth"}}))
    readiness = rendered.container["readinessProbe"]
    assert "httpGet" not in readiness
    command = readiness["exec"]["command"]
    script = command[-1]
    directory, filename = script.rsplit("/", 1)
    assert filename in rendered.configmap["data"]
    assert (
        volume_for_mount(rendered.pod, rendered.container, directory)["configMap"]["name"]
        == rendered.configmap["metadata"]["name"]
    )
    assert "token" not in str(readiness)


def test_jwt_auth():
    rendered = render_all(
        environment(auth={"jwtSecretRef": {"name": "rasa-auth", "key": "jwt-secret"}})
    )
    args = rendered.container["args"]
    assert flag(args, "--jwt-secret") == "$(BOTENV_JWT_SECRET)"
    assert flag(args, "--jwt-method") == "HS256"
    assert secret_ref(rendered.env["BOTENV_JWT_SECRET"]) == {
        "name": "rasa-auth",
        "key": "jwt-secret",
    }
    assert "exec" in rendered.container["readinessProbe"]


def test_asymmetric_jwt_without_a_token_is_rejected():
    with pytest.raises(SpecError) as info:
        render_all(environment(auth={"jwtSecretRef": {"name": "k"}, "jwtMethod": "RS256"}))
    assert info.value.problems[0].startswith("spec.auth.tokenSecretRef: ")


def test_asymmetric_jwt_with_a_token_is_accepted():
    rendered = render_all(
        environment(
            auth={
                "jwtSecretRef": {"name": "k"},
                "tokenSecretRef": {"name": "t"},
                "jwtMethod": "RS256",
            }
        )
    )
    assert flag(rendered.container["args"], "--jwt-method") == "RS256"


def test_cors_flags():
    args = render_all(environment(cors=["https://a.example", "https://b.example"])).container[
        "args"
    ]
    i = args.index("--cors")
    assert args[i + 1 : i + 3] == ["https://a.example", "https://b.example"]
    assert "--cors" not in render_all(environment()).container["args"]


def test_without_auth_probes_use_status_for_readiness_and_root_for_liveness():
    container = render_all(environment()).container
    assert "--auth-token" not in container["args"] and "--jwt-secret" not in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/status", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    assert "startupProbe" in container


def test_channel_credentials_are_mounted_from_the_secret():
    rendered = render_all(environment(credentialsSecretRef={"name": "channels"}))
    path = flag(rendered.container["args"], "--credentials")
    directory, filename = path.rsplit("/", 1)
    volume = volume_for_mount(rendered.pod, rendered.container, directory)
    assert volume["secret"] == {
        "secretName": "channels",
        "items": [{"key": "credentials.yml", "path": filename}],
    }
    assert "--credentials" not in render_all(environment()).container["args"]


# --- env -----------------------------------------------------------------------------------


def test_rasa_environment_is_the_environment_name():
    assert render_all(environment(name="experimental")).env["RASA_ENVIRONMENT"] == {
        "name": "RASA_ENVIRONMENT",
        "value": "experimental",
    }


def test_user_env_joins_botenv_env_one_entry_per_name():
    rendered = render_all(
        environment(
            auth={"tokenSecretRef": {"name": "rasa-auth"}},
            env=[
                {"name": "SANIC_WORKERS", "value": "1"},
                {"name": "SANIC_WORKERS", "value": "2"},
            ],
        )
    )
    names = [e["name"] for e in rendered.container["env"]]
    assert len(names) == len(set(names))
    assert rendered.env["RASA_ENVIRONMENT"]["value"] == "production"
    assert rendered.env["SANIC_WORKERS"]["value"] == "2"
    assert "BOTENV_AUTH_TOKEN" in rendered.env


def test_env_from_resources_and_scheduling_pass_through():
    rendered = render_all(
        environment(
            envFrom=[{"configMapRef": {"name": "extra"}}],
            resources={"limits": {"memory": "2Gi"}},
            nodeSelector={"pool": "bots"},
            tolerations=[{"key": "bots", "operator": "Exists"}],
            serviceAccountName="rasa",
            imagePullSecrets=[{"name": "registry"}],
        )
    )
    assert rendered.container["envFrom"] == [{"configMapRef": {"name": "extra"}}]
    assert rendered.container["resources"] == {"limits": {"memory": "2Gi"}}
    assert rendered.pod["nodeSelector"] == {"pool": "bots"}
    assert rendered.pod["tolerations"] == [{"key": "bots", "operator": "Exists"}]
    assert rendered.pod["serviceAccountName"] == "rasa"
    assert rendered.pod["imagePullSecrets"] == [{"name": "registry"}]


# --- metadata, labels, selector ------------------------------------------------------------


def test_labels_selector_and_owner():
    rendered = render_all(
        environment(
            name="production",
            modelTag="stable",
            replicas=2,
            lockStore=REDIS_LOCK,
            trackerStore={"type": "redis", "host": "redis.db"},
            image="rasa/rasa:3.6.21",
        )
    )
    deploy = rendered.deployment
    meta = deploy["metadata"]
    assert meta["name"] == "rasa-production"
    assert meta["namespace"] == "bots"
    expected = {
        "app.kubernetes.io/name": "rasa",
        "app.kubernetes.io/instance": "production",
        "app.kubernetes.io/managed-by": "botenv",
        "botenv.dev/environment": "production",
        "botenv.dev/tag": "stable",
    }
    assert expected.items() <= meta["labels"].items()
    template_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert expected.items() <= template_labels.items()
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template_labels.items()
    assert "botenv.dev/tag" not in selector  # the selector is immutable; tags move
    assert selector["botenv.dev/environment"] == "production"
    assert deploy["spec"]["replicas"] == 2
    assert rendered.container["image"] == "rasa/rasa:3.6.21"
    owner = meta["ownerReferences"]
    assert owner == [
        {
            "apiVersion": "botenv.dev/v1alpha1",
            "kind": "BotEnvironment",
            "name": "production",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_selector_does_not_change_when_the_tag_moves():
    one = render_all(environment(modelTag="a")).deployment["spec"]["selector"]
    two = render_all(environment(modelTag="b")).deployment["spec"]["selector"]
    assert one == two


def test_selectors_of_two_environments_do_not_overlap():
    one = render_all(environment(name="production")).deployment["spec"]["selector"]
    two = render_all(environment(name="experimental")).deployment["spec"]["selector"]
    assert one["matchLabels"] != two["matchLabels"]


def test_long_tag_names_become_valid_label_values():
    tag = "release-" + "x" * 100 + ".candidate"
    labels = render_all(environment(modelTag=tag)).deployment["metadata"]["labels"]
    value = labels["botenv.dev/tag"]
    assert len(value) <= 63
    assert value[0].isalnum() and value[-1].isalnum()
    other = render_all(environment(modelTag=tag + "2")).deployment["metadata"]["labels"]
    assert other["botenv.dev/tag"] != value


def test_user_pod_labels_do_not_replace_botenv_labels():
    template = render_all(
        environment(podLabels={"team": "bots", "botenv.dev/environment": "other"})
    ).deployment["spec"]["template"]["metadata"]["labels"]
    assert template["team"] == "bots"
    assert template["botenv.dev/environment"] == "production"


def test_rolling_update_never_drops_below_the_asked_replicas():
    strategy = render_all(environment()).deployment["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


# --- pod template annotations --------------------------------------------------------------


def test_restart_rollout_annotates_model_and_digest():
    annotations = render_all(
        environment(), model="m2.tar.gz", digest="etag-2", config_hash="c1", secrets_hash="s1"
    ).annotations
    assert annotations[MODEL_ANNOTATION] == "m2.tar.gz"
    assert annotations[DIGEST_ANNOTATION] == "etag-2"
    assert annotations[CONFIG_HASH_ANNOTATION] == "c1"
    assert annotations[SECRETS_HASH_ANNOTATION] == "s1"


def test_no_digest_annotation_without_a_digest():
    annotations = render_all(environment(), model="m2.tar.gz", digest="").annotations
    assert annotations[MODEL_ANNOTATION] == "m2.tar.gz"
    assert DIGEST_ANNOTATION not in annotations


def test_hotswap_with_pull_keeps_the_template_when_the_model_moves():
    one = render_all(environment(rollout="HotSwap"), model="m1.tar.gz", digest="d1")
    two = render_all(environment(rollout="HotSwap"), model="m2.tar.gz", digest="d2")
    assert MODEL_ANNOTATION not in one.annotations
    assert DIGEST_ANNOTATION not in one.annotations
    assert {CONFIG_HASH_ANNOTATION, SECRETS_HASH_ANNOTATION} <= set(one.annotations)
    assert one.deployment["spec"]["template"] == two.deployment["spec"]["template"]


def test_restart_rolls_the_template_when_the_model_moves():
    one = render_all(environment(), model="m1.tar.gz", digest="d1")
    two = render_all(environment(), model="m2.tar.gz", digest="d2")
    assert one.deployment["spec"]["template"] != two.deployment["spec"]["template"]


def test_user_pod_annotations_are_kept():
    annotations = render_all(
        environment(podAnnotations={"prometheus.io/scrape": "true"})
    ).annotations
    assert annotations["prometheus.io/scrape"] == "true"
    assert SECRETS_HASH_ANNOTATION in annotations


# --- service -------------------------------------------------------------------------------


def test_service_selects_the_rasa_pods_on_the_named_port():
    rendered = render_all(
        environment(service={"type": "LoadBalancer", "port": 80, "annotations": {"a": "b"}})
    )
    svc = rendered.service
    assert svc["metadata"]["name"] == "rasa-production"
    assert svc["metadata"]["annotations"] == {"a": "b"}
    assert svc["metadata"]["ownerReferences"][0]["controller"] is True
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["selector"] == rendered.deployment["spec"]["selector"]["matchLabels"]
    port = svc["spec"]["ports"][0]
    assert port["port"] == 80
    assert port["targetPort"] == "http"
    assert any(p["name"] == "http" for p in rendered.container["ports"])
