"""The action server botenv runs per environment, and the Rasa Pro license."""

from __future__ import annotations

import pytest

from botenv.api import SpecError, parse_environment, parse_tag
from botenv.api.environment import check_tag_fits
from botenv.api.tag import StorageSpec
from botenv.render import actionserver, names
from tests.unit.builders import DEFAULT_IMAGE, UID, environment, render_all, spec, tag

ACTIONS = {"image": "registry.example.com/acme-actions:1.4"}


def test_action_endpoint_points_at_the_environments_own_action_server() -> None:
    rendered = render_all(environment(actionServer=ACTIONS))
    assert rendered.endpoints["action_endpoint"] == {
        "url": "http://rasa-production-actions.bots.svc:5055/webhook"
    }


def test_action_endpoint_follows_the_port() -> None:
    rendered = render_all(environment(actionServer={**ACTIONS, "port": 6055}))
    assert rendered.endpoints["action_endpoint"]["url"].endswith(".svc:6055/webhook")


def test_no_action_server_and_no_url_means_no_action_endpoint() -> None:
    assert "action_endpoint" not in render_all(environment()).endpoints


def test_an_external_action_server_is_used_as_given() -> None:
    rendered = render_all(environment(actionEndpoint={"url": "http://actions.ext:5055/webhook"}))
    assert rendered.endpoints["action_endpoint"] == {"url": "http://actions.ext:5055/webhook"}


def test_both_an_action_server_and_an_external_url_is_an_error_naming_the_field() -> None:
    with pytest.raises(
        SpecError,
        match=r"spec\.actionEndpoint\.url: must be empty with "
        r"spec\.actionServer",
    ):
        spec(actionServer=ACTIONS, actionEndpoint={"url": "http://a:5055/webhook"})


def test_action_server_deployment() -> None:
    parsed = spec(
        actionServer={
            **ACTIONS,
            "replicas": 2,
            "env": [{"name": "A", "value": "1"}],
            "resources": {"requests": {"cpu": "100m"}},
            "nodeSelector": {"pool": "bots"},
            "podAnnotations": {"team": "acme"},
        }
    )
    deploy = actionserver.deployment(parsed, image=ACTIONS["image"], tag="production", uid=UID)
    assert deploy["metadata"]["name"] == "rasa-production-actions"
    assert deploy["metadata"]["ownerReferences"][0]["uid"] == UID
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == ACTIONS["image"]
    assert container["ports"] == [{"name": "http", "containerPort": 5055, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert container["resources"] == {"requests": {"cpu": "100m"}}
    assert "args" not in container, "the image's own start command by default"
    assert pod["nodeSelector"] == {"pool": "bots"}
    assert deploy["spec"]["template"]["metadata"]["annotations"] == {"team": "acme"}
    # The action pods are not selected by the Rasa Service, nor the Rasa pods by this one.
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert selector != names.selector_labels("production")
    assert deploy["spec"]["template"]["metadata"]["labels"].items() >= selector.items()


def test_action_server_service_selects_the_action_pods_on_the_port() -> None:
    parsed = spec(actionServer={**ACTIONS, "port": 6055})
    svc = actionserver.service(parsed, tag="production", uid=UID)
    deploy = actionserver.deployment(parsed, image="x", tag="production", uid=UID)
    assert svc["metadata"]["name"] == "rasa-production-actions"
    assert svc["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 6055, "targetPort": "http", "protocol": "TCP"}
    ]


def test_the_tags_image_wins_over_the_environments() -> None:
    parsed = spec(actionServer=ACTIONS)
    assert (
        actionserver.image(parsed, "registry.example.com/acme-actions:2.0")
        == "registry.example.com/acme-actions:2.0"
    )
    assert actionserver.image(parsed, "") == ACTIONS["image"]


def test_no_image_anywhere_names_the_field() -> None:
    parsed = spec(actionServer={"replicas": 1})
    with pytest.raises(
        SpecError,
        match=r"spec\.actionServer\.image: is required, since "
        r"ModelTag 'production' sets no spec\.actionServerImage",
    ):
        check_tag_fits(parsed, storage=StorageSpec(provider="http"), action_server_image="")


def test_a_long_environment_name_with_an_action_server_is_rejected() -> None:
    with pytest.raises(
        SpecError,
        match=r"metadata\.name: must be at most 50 characters "
        r"with spec\.actionServer",
    ):
        parse_environment(environment(name="a" * 51, actionServer=ACTIONS), DEFAULT_IMAGE)


def test_tag_action_server_image_is_parsed_and_checked() -> None:
    body = tag()
    body["spec"]["actionServerImage"] = "registry.example.com/acme-actions:1.4"
    assert parse_tag(body).action_server_image == "registry.example.com/acme-actions:1.4"
    body["spec"]["actionServerImage"] = "not an image"
    with pytest.raises(SpecError, match=r"spec\.actionServerImage: must be a container image"):
        parse_tag(body)


def test_rasa_pro_license_is_injected_by_reference() -> None:
    rendered = render_all(environment(license={"secretRef": {"name": "rasa-pro"}}))
    assert rendered.env["RASA_PRO_LICENSE"] == {
        "name": "RASA_PRO_LICENSE",
        "valueFrom": {"secretKeyRef": {"name": "rasa-pro", "key": "license"}},
    }


def test_a_missing_license_key_is_reported_with_its_field() -> None:
    from botenv.render import secretenv as se

    parsed = spec(license={"secretRef": {"name": "rasa-pro", "key": "pro"}})
    uses = se.secret_uses(parsed, None)
    problems = se.missing_keys(
        uses, {"rasa-pro": frozenset({"license"}), "rasa-production-pull": frozenset({"token"})}
    )
    assert problems == ["Secret 'rasa-pro' has no key 'pro' (named by spec.license.secretRef.key)"]


def test_restart_pins_the_pull_url_to_the_pods_digest_hotswap_follows_the_tag() -> None:
    restart = render_all(environment(), digest="abc/+=")
    assert restart.endpoints["models"]["url"] == (
        "http://botenv-model-server.botenv-system.svc:8080/models/bots/tags/production"
        "?digest=${BOTENV_MODEL_DIGEST}"
    )
    assert restart.env["BOTENV_MODEL_DIGEST"] == {
        "name": "BOTENV_MODEL_DIGEST",
        "value": "abc%2F%2B%3D",
    }
    hot = render_all(environment(rollout="HotSwap"), digest="abc")
    assert hot.endpoints["models"]["url"].endswith("/models/bots/tags/production")
    assert "BOTENV_MODEL_DIGEST" not in hot.env
    # A tag move changes the pod template only: the ConfigMap stays the same.
    moved = render_all(environment(), digest="def")
    assert moved.configmap == restart.configmap
