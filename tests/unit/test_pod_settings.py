"""Pod settings of a BotEnvironment and its action server: volumes and mounts, init
containers, sidecars, extra `rasa run` flags, probe timings, priority, the termination grace
period and the preStop pause. What botenv owns in its pods (its container's name, its
volumes, the paths it mounts, the flags it passes, the ports it probes) is refused with the
field's path."""

from __future__ import annotations

import pytest

from botenv.api import SpecError
from botenv.api.training import parse_training
from botenv.render import actionserver
from tests.unit.builders import UID, environment, render_all, spec, storage
from tests.unit.test_render_training import IMAGE
from tests.unit.test_render_training import body as training_body

ACTIONS = {"image": "registry.example.com/acme-actions:1.4"}
ADDONS = {"name": "addons", "configMap": {"name": "tracker-store-module"}}
SHARED = {"name": "shared", "emptyDir": {}}


def _error(**fields: object) -> str:
    with pytest.raises(SpecError) as err:
        spec(**fields)
    return str(err.value)


def _action_pod(**server: object) -> dict:
    parsed = spec(actionServer={**ACTIONS, **server})
    rendered = actionserver.deployment(parsed, image=ACTIONS["image"], tag="production", uid=UID)
    return rendered["spec"]["template"]["spec"]


# --- rendering -----------------------------------------------------------------------------


def test_volumes_and_mounts_reach_the_pod_and_the_rasa_container() -> None:
    rendered = render_all(
        environment(
            volumes=[ADDONS],
            volumeMounts=[{"name": "addons", "mountPath": "/opt/addons", "readOnly": True}],
        )
    )
    assert rendered.pod["volumes"][-1] == ADDONS
    assert rendered.container["volumeMounts"][-1] == {
        "name": "addons",
        "mountPath": "/opt/addons",
        "readOnly": True,
    }
    # botenv's own volumes come first, untouched
    assert rendered.pod["volumes"][0]["name"] == "rasa-config"


def test_init_containers_and_sidecars_run_beside_rasa() -> None:
    init = {
        "name": "fetch-addons",
        "image": "busybox:1.36",
        "command": ["sh", "-c", "cp -r /src/. /addons/"],
        "volumeMounts": [{"name": "shared", "mountPath": "/addons"}],
    }
    sidecar = {
        "name": "log-shipper",
        "image": "fluent/fluent-bit:3.0",
        "volumeMounts": [{"name": "botenv-work", "mountPath": "/rasa", "readOnly": True}],
    }
    rendered = render_all(environment(volumes=[SHARED], initContainers=[init], sidecars=[sidecar]))
    (rendered_init,) = rendered.pod["initContainers"]
    rasa, shipper = rendered.pod["containers"]
    assert rasa["name"] == "rasa"
    assert {k: v for k, v in rendered_init.items() if k != "securityContext"} == init
    assert {k: v for k, v in shipper.items() if k != "securityContext"} == sidecar


def test_extra_args_follow_botenvs_flags() -> None:
    args = render_all(
        environment(extraArgs=["--debug", "--log-file", "/var/lib/rasa/rasa.log"])
    ).container["args"]
    assert args[:2] == ["run", "--enable-api"]
    assert args[-3:] == ["--debug", "--log-file", "/var/lib/rasa/rasa.log"]
    remote = render_all(
        environment(delivery="remoteStorage", extraArgs=["--response-timeout", "7200"]),
        storage=storage(provider="s3", bucket="models"),
    ).container["args"]
    assert remote[-2:] == ["--response-timeout", "7200"]
    assert "--remote-storage" in remote


def test_probe_timings_override_botenvs_and_keep_its_checks() -> None:
    rendered = render_all(
        environment(
            probes={
                # a large model: 20 minutes to load it
                "startup": {"periodSeconds": 10, "failureThreshold": 120},
                "readiness": {"timeoutSeconds": 10},
                "liveness": {"initialDelaySeconds": 30, "failureThreshold": 6},
            }
        )
    )
    container = rendered.container
    assert container["startupProbe"] == {
        "tcpSocket": {"port": "http"},
        "periodSeconds": 10,
        "failureThreshold": 120,
        "timeoutSeconds": 3,
    }
    assert container["readinessProbe"]["timeoutSeconds"] == 10
    assert container["readinessProbe"]["httpGet"] == {"path": "/status", "port": "http"}
    assert container["livenessProbe"]["initialDelaySeconds"] == 30
    assert container["livenessProbe"]["failureThreshold"] == 6
    assert container["livenessProbe"]["periodSeconds"] == 15


def test_priority_grace_period_and_a_prestop_pause() -> None:
    rendered = render_all(
        environment(
            priorityClassName="bots-critical",
            terminationGracePeriodSeconds=120,
            preStopSleepSeconds=20,
        )
    )
    assert rendered.pod["priorityClassName"] == "bots-critical"
    assert rendered.pod["terminationGracePeriodSeconds"] == 120
    assert rendered.container["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "20"]}}}


def test_a_short_prestop_pause_by_default_and_none_when_zero() -> None:
    """Endpoints stop sending new requests a moment after the pod starts to stop: Rasa keeps
    serving those (and finishes the conversations in flight) for a few seconds first."""
    default = render_all(environment())
    assert default.container["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "5"]}}}
    assert "terminationGracePeriodSeconds" not in default.pod
    assert "priorityClassName" not in default.pod
    assert "lifecycle" not in render_all(environment(preStopSleepSeconds=0)).container


def test_action_server_pod_settings() -> None:
    pod = _action_pod(
        volumes=[ADDONS],
        volumeMounts=[{"name": "addons", "mountPath": "/app/addons"}],
        initContainers=[{"name": "wait-for-db", "image": "busybox"}],
        sidecars=[{"name": "proxy", "image": "envoy"}],
        probes={"readiness": {"periodSeconds": 2}},
        priorityClassName="bots",
        terminationGracePeriodSeconds=60,
        preStopSleepSeconds=10,
        serviceAccountName="actions",
    )
    server, proxy = pod["containers"]
    assert server["name"] == "action-server" and proxy["name"] == "proxy"
    assert pod["initContainers"][0]["name"] == "wait-for-db"
    assert pod["volumes"][-1] == ADDONS
    assert {"name": "addons", "mountPath": "/app/addons"} in server["volumeMounts"]
    assert server["readinessProbe"]["periodSeconds"] == 2
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    assert pod["priorityClassName"] == "bots"
    assert pod["terminationGracePeriodSeconds"] == 60
    assert server["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "10"]}}}
    assert pod["serviceAccountName"] == "actions"
    assert "automountServiceAccountToken" not in pod


# --- what botenv owns is refused, with the field's path ---------------------------------------


@pytest.mark.parametrize("field", ["sidecars", "initContainers"])
def test_a_container_named_like_rasas_is_refused(field: str) -> None:
    text = _error(**{field: [{"name": "rasa", "image": "x"}]})
    assert f"spec.{field}[0].name: 'rasa' is the Rasa container's name" in text


def test_container_names_must_be_unique_and_need_an_image() -> None:
    text = _error(
        sidecars=[{"name": "a", "image": "x"}, {"name": "a", "image": "y"}],
        initContainers=[{"name": "Bad_Name", "image": "x"}, {"name": "b"}],
    )
    assert "spec.sidecars[1].name: 'a' is used by another container of the pod" in text
    assert "spec.initContainers[0].name: must be a DNS label" in text
    assert "spec.initContainers[1].image: is required" in text


def test_a_sidecar_may_not_take_the_port_botenv_probes() -> None:
    text = _error(
        sidecars=[
            {"name": "a", "image": "x", "ports": [{"containerPort": 5005}]},
            {"name": "b", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]},
        ]
    )
    assert "spec.sidecars[0].ports[0].containerPort: 5005 is Rasa's port" in text
    assert "spec.sidecars[1].ports[0].name: 'http' is the name of Rasa's port" in text


@pytest.mark.parametrize("name", ["rasa-config", "botenv-work", "botenv-tmp", "secret-0"])
def test_a_volume_named_like_one_of_botenvs_is_refused(name: str) -> None:
    text = _error(volumes=[{"name": name, "emptyDir": {}}])
    assert f"spec.volumes[0].name: {name!r} is a volume botenv" in text


@pytest.mark.parametrize(
    "path",
    [
        "/etc/botenv/rasa",  # endpoints.yml
        "/etc/botenv",  # above it: would hide it
        "/etc/botenv/credentials/extra",  # inside a mounted Secret's directory
        "/etc/botenv/gcs",
        "/var/lib/rasa",  # Rasa's working directory
        "/tmp",
        "/",
    ],
)
def test_a_volume_mount_over_a_path_botenv_mounts_is_refused(path: str) -> None:
    text = _error(volumes=[SHARED], volumeMounts=[{"name": "shared", "mountPath": path}])
    assert f"spec.volumeMounts[0].mountPath: {path!r} " in text
    assert "botenv mounts" in text


def test_volume_mounts_name_a_volume_and_an_absolute_path() -> None:
    text = _error(
        volumes=[SHARED],
        volumeMounts=[
            {"name": "nope", "mountPath": "/opt/x"},
            {"name": "shared", "mountPath": "relative/dir"},
            {"name": "rasa-config", "mountPath": "/opt/config"},
        ],
    )
    assert "spec.volumeMounts[0].name: 'nope' is not a volume in spec.volumes" in text
    assert "spec.volumeMounts[1].mountPath: must be an absolute path" in text
    assert "spec.volumeMounts[2].name: 'rasa-config' is not a volume in spec.volumes" in text


def test_sidecars_may_mount_rasas_working_dir_but_not_unknown_volumes() -> None:
    spec(
        sidecars=[
            {
                "name": "s",
                "image": "x",
                "volumeMounts": [{"name": "botenv-work", "mountPath": "/w"}],
            }
        ]
    )
    text = _error(
        sidecars=[
            {"name": "s", "image": "x", "volumeMounts": [{"name": "gone", "mountPath": "/w"}]}
        ]
    )
    assert "spec.sidecars[0].volumeMounts[0].name: 'gone' is not a volume of the pod" in text


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "8080"],
        ["--port=8080"],
        ["-p", "8080"],
        ["-p8080"],
        ["--endpoints", "/x.yml"],
        ["--endp", "/x.yml"],  # argparse takes an unambiguous abbreviation
        ["--credentials", "/c.yml"],
        ["--model", "m.tar.gz"],
        ["-m", "m.tar.gz"],
        ["--auth-token", "t"],
        ["-t", "t"],
        ["--enable-api"],
        ["--cors", "*"],
        ["--remote-storage", "aws"],
        ["--jwt-secret", "s"],
        ["--jwt-method", "HS512"],
        ["--interface", "127.0.0.1"],
        ["-i", "127.0.0.1"],
    ],
)
def test_extra_args_setting_a_flag_botenv_sets_are_refused(args: list[str]) -> None:
    text = _error(extraArgs=["--debug", *args])
    assert f"spec.extraArgs[1]: {args[0]!r} " in text
    assert "botenv sets" in text


def test_extra_args_start_with_a_flag() -> None:
    assert "spec.extraArgs[0]: must be a flag" in _error(extraArgs=["model.tar.gz"])
    spec(extraArgs=["--log-file", "rasa.log", "--debug", "--response-timeout", "60"])


def test_probe_overrides_are_timings_only() -> None:
    text = _error(
        probes={
            "readiness": {"httpGet": {"path": "/", "port": 5005}, "periodSeconds": 0},
            "liveness": {"successThreshold": 2},
            "warmup": {"periodSeconds": 1},
        }
    )
    assert "spec.probes.readiness.httpGet: botenv sets the probe's check" in text
    assert "spec.probes.readiness.periodSeconds: must be at least 1, got 0" in text
    assert "spec.probes.liveness.successThreshold: must be 1 for a liveness probe" in text
    assert "spec.probes.warmup: must be one of startup, readiness, liveness" in text


def test_the_prestop_pause_fits_in_the_grace_period() -> None:
    text = _error(terminationGracePeriodSeconds=10, preStopSleepSeconds=10)
    assert "spec.preStopSleepSeconds: must be less than terminationGracePeriodSeconds (10)" in text
    # Kubernetes' default grace period is 30 s
    assert "terminationGracePeriodSeconds (30, the default)" in _error(preStopSleepSeconds=45)


def test_action_server_fields_name_their_own_path() -> None:
    text = _error(
        actionServer={
            **ACTIONS,
            "sidecars": [{"name": "action-server", "image": "x"}],
            "volumes": [{"name": "botenv-tmp", "emptyDir": {}}],
            "volumeMounts": [{"name": "botenv-tmp", "mountPath": "/tmp"}],
            "probes": {"startup": {"periodSeconds": 1}},
        }
    )
    assert (
        "spec.actionServer.sidecars[0].name: 'action-server' is the action server "
        "container's name" in text
    )
    assert "spec.actionServer.volumes[0].name: 'botenv-tmp' is a volume botenv" in text
    assert "spec.actionServer.volumeMounts[0].mountPath: '/tmp' " in text
    assert "spec.actionServer.probes.startup: must be one of readiness, liveness" in text


def test_security_contexts_are_objects() -> None:
    text = _error(podSecurityContext="root", securityContext=["x"])
    assert "spec.podSecurityContext: must be an object" in text
    assert "spec.securityContext: must be an object" in text
    bad = training_body(podSecurityContext=1)
    with pytest.raises(SpecError, match=r"spec\.podSecurityContext: must be an object"):
        parse_training(bad, IMAGE)


# --- botenv's own layout is what it reserves ----------------------------------------------------


def test_every_volume_path_and_flag_botenv_renders_is_reserved() -> None:
    """The renderers and the reserved names agree: a maximal Rasa pod's own volumes, mount
    paths and flags are all refused in the user's fields."""
    rendered = render_all(
        environment(
            delivery="remoteStorage",
            auth={"tokenSecretRef": {"name": "a"}, "jwtSecretRef": {"name": "a"}},
            credentialsSecretRef={"name": "channels"},
            cors=["*"],
        ),
        storage=storage(provider="gcs", bucket="models", secretRef={"name": "gcs"}),
    )
    for volume in rendered.pod["volumes"]:
        assert "is a volume botenv" in _error(volumes=[{"name": volume["name"], "emptyDir": {}}])
    for mount in rendered.container["volumeMounts"]:
        text = _error(
            volumes=[SHARED], volumeMounts=[{"name": "shared", "mountPath": mount["mountPath"]}]
        )
        assert "botenv mounts" in text, mount
    for arg in rendered.container["args"][1:]:
        if arg.startswith("-"):
            assert "botenv sets" in _error(extraArgs=[arg]), arg


def test_spec_env_may_set_pythonpath_and_home() -> None:
    """botenv's HOME and PYTHONPATH are defaults: a mounted module's directory goes on
    PYTHONPATH through spec.env."""
    rendered = render_all(environment(env=[{"name": "PYTHONPATH", "value": "/opt/addons"}]))
    names = [e["name"] for e in rendered.container["env"]]
    assert names.count("PYTHONPATH") == 1 and names.count("HOME") == 1
    assert rendered.env["PYTHONPATH"]["value"] == "/opt/addons"
    assert rendered.env["HOME"]["value"] == "/var/lib/rasa"
