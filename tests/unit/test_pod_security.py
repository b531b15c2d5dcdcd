"""Restricted pod security by default for every pod botenv creates: the Rasa server, the
action server and the training Job. Each rendered pod meets every control of the
`restricted` Pod Security Standard (tests/support/podsecurity.py; what Kubernetes 1.20,
without Pod Security admission, cannot check), writable emptyDirs cover every place Rasa
writes, and the specs' podSecurityContext and securityContext override botenv's defaults."""

from __future__ import annotations

import pytest

from botenv.api.training import parse_training
from botenv.render import actionserver
from botenv.render import training as render_training
from tests.support.podsecurity import violations
from tests.unit.builders import UID, environment, render_all, spec, storage
from tests.unit.test_render_training import BOTENV, IMAGE, KEYS, STORAGE
from tests.unit.test_render_training import body as training_body

RASA_USER = 1001  # the rasa/rasa and rasa/rasa-sdk images' own user
BOTENV_USER = 10001  # botenv's image (Dockerfile, chart)
ACTIONS = {"image": "registry.example.com/acme-actions:1.4"}
SIDECARS = {
    "initContainers": [{"name": "fetch-addons", "image": "busybox:1.36"}],
    "sidecars": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.0"}],
}


def _rasa_pod(**fields: object) -> dict:
    return render_all(environment(**fields)).pod


def _action_pod(**server: object) -> dict:
    parsed = spec(actionServer={**ACTIONS, **server})
    rendered = actionserver.deployment(parsed, image=ACTIONS["image"], tag="production", uid=UID)
    return rendered["spec"]["template"]["spec"]


def _job_pod(keys: list[str] | None = None, **fields: object) -> dict:
    parsed = parse_training(training_body(**fields), IMAGE)
    job = render_training.job(parsed, keys=keys or KEYS, botenv_image=BOTENV, uid="u-1")
    return job["spec"]["template"]["spec"]


def _mounts(container: dict) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}


def _empty_dirs(pod: dict) -> set[str]:
    return {v["name"] for v in pod["volumes"] if "emptyDir" in v}


PODS = {
    "rasa": lambda: _rasa_pod(),
    "rasa with auth, credentials and a service account": lambda: _rasa_pod(
        auth={"tokenSecretRef": {"name": "auth"}},
        credentialsSecretRef={"name": "channels"},
        serviceAccountName="rasa",
    ),
    "rasa, remoteStorage from GCS (a mounted key)": lambda: (
        render_all(
            environment(delivery="remoteStorage"),
            storage=storage(provider="gcs", bucket="models", secretRef={"name": "gcs"}),
        ).pod
    ),
    "rasa with an init container and a sidecar": lambda: _rasa_pod(**SIDECARS),
    "action server": lambda: _action_pod(),
    "action server with an init container and a sidecar": lambda: _action_pod(**SIDECARS),
    "training from a ConfigMap": lambda: _job_pod(),
    "training from an archive with credentials": lambda: _job_pod(
        source={"storage": STORAGE["s3"], "object": "acme.tar.gz"}
    ),
    "training with its validate and test gates": lambda: _gated_pod(),
}


def _gated_pod() -> dict:
    return _job_pod(
        keys=[*KEYS, "tests__test_stories.yml"],
        validate=True,
        test={"minIntentF1": 0.8, "minStoryAccuracy": 0.9},
    )


def test_the_gate_steps_run_hardened_with_tmp_on_the_work_volume() -> None:
    pod = _gated_pod()
    steps = {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}
    assert {"validate", "test", "gates"} <= set(steps)
    for container in steps.values():
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert _mounts(container)["/tmp"] == "work"
    assert steps["gates"]["securityContext"]["runAsUser"] == BOTENV_USER
    assert "runAsUser" not in steps["validate"]["securityContext"]


@pytest.mark.parametrize("which", PODS)
def test_every_pod_botenv_renders_meets_the_restricted_standard(which: str) -> None:
    assert violations(PODS[which]()) == []


def test_the_restricted_check_sees_a_pod_without_settings() -> None:
    """The checker itself: a plain pod breaks the four rules admission names first."""
    found = violations({"containers": [{"name": "app", "image": "app"}]})
    assert found == [
        'allowPrivilegeEscalation != false: containers "app"',
        'runAsNonRoot != true: containers "app"',
        'seccompProfile: containers "app"',
        'capabilities.drop must include ALL: containers "app"',
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"hostNetwork": True}, "host namespaces: hostNetwork"),
        ({"hostPID": True}, "host namespaces: hostPID"),
        ({"hostIPC": True}, "host namespaces: hostIPC"),
        ({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}, 'hostPath volume: "h"'),
        (
            {"volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]},
            "restricted volume types ['nfs']",
        ),
        ({"securityContext": {"runAsUser": 0}}, "runAsUser=0: pod"),
        (
            {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
            "unsafe sysctl kernel.msgmax",
        ),
        (
            {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            "seccompProfile Unconfined: pod",
        ),
        ({"securityContext": {"seLinuxOptions": {"user": "root"}}}, "seLinuxOptions user/role"),
        (
            {"securityContext": {"windowsOptions": {"hostProcess": True}}},
            "hostProcess: pod",
        ),
    ],
)
def test_the_restricted_check_sees_each_pod_level_control(change: dict, expected: str) -> None:
    pod = {**_rasa_pod(), **change}
    if "securityContext" in change:
        pod["securityContext"] = {**_rasa_pod()["securityContext"], **change["securityContext"]}
    if "volumes" in change:
        pod["volumes"] = _rasa_pod()["volumes"] + change["volumes"]
    assert any(expected in v for v in violations(pod)), violations(pod)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"privileged": True}, "privileged"),
        ({"allowPrivilegeEscalation": True}, "allowPrivilegeEscalation != false"),
        ({"runAsNonRoot": False}, "runAsNonRoot != true"),
        ({"runAsUser": 0}, "runAsUser=0"),
        ({"capabilities": {"drop": ["NET_RAW"]}}, "capabilities.drop must include ALL"),
        ({"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}, "capabilities.add beyond"),
        ({"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}, "non-default capabilities"),
        ({"seccompProfile": {"type": "Unconfined"}}, "seccompProfile"),
        ({"procMount": "Unmasked"}, "procMount"),
        ({"appArmorProfile": {"type": "Unconfined"}}, "appArmorProfile"),
        ({"seLinuxOptions": {"type": "spc_t"}}, "seLinuxOptions.type"),
        ({"windowsOptions": {"hostProcess": True}}, "hostProcess"),
    ],
)
def test_the_restricted_check_sees_each_container_level_control(
    context: dict, expected: str
) -> None:
    pod = _rasa_pod(**SIDECARS)
    sidecar = pod["containers"][1]
    sidecar["securityContext"] = {**sidecar["securityContext"], **context}
    assert any(expected in v and "log-shipper" in v for v in violations(pod)), violations(pod)


def test_the_restricted_check_sees_a_host_port() -> None:
    pod = _rasa_pod()
    pod["containers"][0]["ports"][0]["hostPort"] = 5005
    assert violations(pod) == ['hostPort: containers "rasa"']


# --- the defaults, as a user reads them in the pod --------------------------------------------


def test_rasa_pods_run_as_the_rasa_images_own_user_with_runtime_default_seccomp() -> None:
    pod = _rasa_pod()
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": RASA_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }


def test_no_service_account_token_unless_a_service_account_is_asked_for() -> None:
    assert _rasa_pod()["automountServiceAccountToken"] is False
    with_account = _rasa_pod(serviceAccountName="rasa")
    assert with_account["serviceAccountName"] == "rasa"
    assert "automountServiceAccountToken" not in with_account
    assert _action_pod()["automountServiceAccountToken"] is False
    assert _job_pod()["automountServiceAccountToken"] is False


def test_rasa_writes_only_to_emptydirs_its_working_dir_home_and_tmp() -> None:
    """What Rasa 3.6.21 writes (traced with strace on `rasa run`): $HOME (.config/rasa,
    .config/matplotlib, .keras), $TMPDIR (the unpacked model) and, with remoteStorage, the
    model archive in its working directory."""
    for rendered in (
        render_all(environment()),
        render_all(
            environment(delivery="remoteStorage"),
            storage=storage(provider="s3", bucket="models"),
        ),
    ):
        container, pod = rendered.container, rendered.pod
        mounts = _mounts(container)
        work = container["workingDir"]
        assert mounts[work] in _empty_dirs(pod)
        assert mounts["/tmp"] in _empty_dirs(pod)
        assert mounts[work] != mounts["/tmp"]
        assert rendered.env["HOME"] == {"name": "HOME", "value": work}
        # Modules a custom image puts in /app (the image's own working directory, which
        # Rasa adds to sys.path) still import.
        assert rendered.env["PYTHONPATH"] == {"name": "PYTHONPATH", "value": "/app"}
        # Every other mount is read-only (config, credentials, keys).
        for mount in container["volumeMounts"]:
            if mount["mountPath"] not in (work, "/tmp"):
                assert mount.get("readOnly") is True, mount


def test_users_containers_get_no_privilege_escalation_and_no_capabilities() -> None:
    pod = _rasa_pod(
        initContainers=[{"name": "init", "image": "busybox"}],
        sidecars=[
            {
                "name": "proxy",
                "image": "envoy",
                "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
            }
        ],
    )
    (init,) = pod["initContainers"]
    assert init["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    proxy = pod["containers"][1]
    assert proxy["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    }


def test_action_server_runs_as_the_sdk_images_user_with_a_writable_tmp() -> None:
    pod = _action_pod()
    assert pod["securityContext"]["runAsUser"] == RASA_USER
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The image's /app (its actions) stays as built: only /tmp is an emptyDir.
    assert _mounts(container) == {"/tmp": "botenv-tmp"}
    assert "workingDir" not in container


def test_training_runs_rasa_as_its_user_and_botenvs_steps_as_botenvs_user() -> None:
    pod = _job_pod(source={"storage": STORAGE["s3"], "object": "acme.tar.gz"})
    assert pod["securityContext"]["runAsUser"] == RASA_USER
    fetch, train = pod["initContainers"]
    (upload,) = pod["containers"]
    for step in (fetch, upload):
        assert step["securityContext"]["runAsUser"] == BOTENV_USER
        assert step["securityContext"]["runAsGroup"] == BOTENV_USER
    assert "runAsUser" not in train["securityContext"]
    for container in (fetch, train, upload):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        # /tmp is the work volume: one budget (BOTENV_TRAINING_WORK_SIZE_LIMIT) for scratch
        assert _mounts(container)["/tmp"] == "work"
    assert _mounts(train)[train["workingDir"]] == "work"


# --- overrides -----------------------------------------------------------------------------


def test_pod_security_context_overrides_botenvs_key_by_key() -> None:
    pod = _rasa_pod(podSecurityContext={"runAsUser": 2000, "fsGroup": 2000})
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 2000,
        "fsGroup": 2000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_security_context_overrides_the_rasa_containers_key_by_key() -> None:
    pod = _rasa_pod(securityContext={"readOnlyRootFilesystem": False})
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": False,
    }


def test_action_server_security_contexts_override_its_own() -> None:
    pod = _action_pod(
        podSecurityContext={"runAsUser": 1000},
        securityContext={"readOnlyRootFilesystem": False},
    )
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False
    # ... and the Rasa pods keep theirs
    assert _rasa_pod()["securityContext"]["runAsUser"] == RASA_USER


def test_training_security_contexts_override_the_pod_and_the_train_step() -> None:
    pod = _job_pod(
        podSecurityContext={"fsGroup": 1001},
        securityContext={"readOnlyRootFilesystem": False},
    )
    assert pod["securityContext"]["fsGroup"] == 1001
    train = pod["initContainers"][0]
    assert train["securityContext"]["readOnlyRootFilesystem"] is False
    # botenv's own upload step keeps botenv's settings
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_privileged_container_gets_no_contradicting_default() -> None:
    """The API server refuses allowPrivilegeEscalation false beside privileged (or
    CAP_SYS_ADMIN): botenv leaves it out, and admission judges the pod."""
    pod = _rasa_pod(
        securityContext={"privileged": True},
        sidecars=[
            {
                "name": "debugger",
                "image": "busybox",
                "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}},
            }
        ],
    )
    rasa, debugger = pod["containers"]
    assert "allowPrivilegeEscalation" not in rasa["securityContext"]
    assert rasa["securityContext"]["privileged"] is True
    assert "allowPrivilegeEscalation" not in debugger["securityContext"]
    assert any("privileged" in v for v in violations(pod))
