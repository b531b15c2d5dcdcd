"""The test kubelet (tests/support/kubelet.py) on the real API server and controller manager:
Deployments of local processes become Available, roll, restart on liveness failures, wait
for missing configuration as a kubelet does, and reach each other through Services; Jobs
run their init containers and containers to completion, and the real Job controller
completes, retries or fails them; and a Rasa environment exactly as botenv renders it runs
and answers."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from botenv.render import actionserver
from tests.e2e.kubelet_fixtures import (
    TINY_PORT,
    http,
    pods,
    python,
    service,
    tiny_deployment,
    tiny_job,
    wait_available,
    wait_job,
    wait_rolled,
)
from tests.support.kubectl import condition, eventually
from tests.support.kubelet import rasa_sdk_image
from tests.support.rasa import model_id, train, write_project
from tests.unit.builders import UID, environment, render_all

pytestmark = pytest.mark.e2e

LOOPBACK_POD_IP = re.compile(r"127\.0\.(\d+)\.(\d+)")


def secret(ns: str, name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def configmap(ns: str, name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data,
    }


def only_pod(kubectl, ns: str, app: str) -> dict:
    found = pods(kubectl, ns, app)
    assert len(found) == 1, [p["metadata"]["name"] for p in found]
    return found[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (reaped by the kubelet soon).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_deployment_runs_available_with_env_volumes_and_pod_ips(kubectl, kubelet, kubelet_ns):
    ns = kubelet_ns
    kubectl.apply(
        configmap(ns, "settings", greeting="hello", **{"app.yml": "mode: test\n"}),
        secret(ns, "creds", password="s3cret", user="app"),
        tiny_deployment(
            ns,
            "web",
            replicas=2,
            args=[
                str(TINY_PORT),
                "--config",
                "/etc/web/app.yml",
                "--greeting=$(GREETING)",
                "--literal=$$(GREETING)",
            ],
            env=[
                {
                    "name": "GREETING",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}},
                },
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                },
                {
                    "name": "OPTIONAL",
                    "valueFrom": {
                        "secretKeyRef": {"name": "creds", "key": "absent", "optional": True}
                    },
                },
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {
                    "name": "MESSAGE",
                    "value": "$(GREETING) from $(POD_NAME), $$(GREETING), $(UNDEFINED)",
                },
                {"name": "CREDS_FILE", "value": "/etc/creds/db/password"},
            ],
            container={
                "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "CREDS_"}],
                "volumeMounts": [
                    {"name": "settings", "mountPath": "/etc/web", "readOnly": True},
                    {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
                    {"name": "scratch", "mountPath": "/scratch"},
                ],
                # Exec: `python` is mapped, and 127.0.0.1 inside the pod is the pod.
                "readinessProbe": {
                    "exec": {
                        "command": [
                            "python",
                            "-c",
                            "import urllib.request; urllib.request.urlopen("
                            f"'http://127.0.0.1:{TINY_PORT}/healthz', timeout=2)",
                        ]
                    },
                    "periodSeconds": 1,
                    "timeoutSeconds": 5,
                },
                "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2},
            },
            pod={
                "volumes": [
                    {"name": "settings", "configMap": {"name": "settings"}},
                    {
                        "name": "creds",
                        "secret": {
                            "secretName": "creds",
                            "items": [{"key": "password", "path": "db/password", "mode": 0o400}],
                        },
                    },
                    {"name": "scratch", "emptyDir": {}},
                ]
            },
        ),
    )
    began = time.monotonic()
    wait_available(kubectl, ns, "web")
    print(f"\n2 replicas Available in {time.monotonic() - began:.1f} s")

    node = json.loads(kubectl.run("get", "node", kubelet.node_name, "-o", "json").stdout)
    assert condition(node, "Ready")["status"] == "True"
    assert node["status"]["allocatable"]["pods"] == "110"

    found = pods(kubectl, ns, "web")
    assert len(found) == 2
    ips = {p["status"]["podIP"] for p in found}
    assert len(ips) == 2
    for pod in found:
        name, status = pod["metadata"]["name"], pod["status"]
        ip = status["podIP"]
        assert LOOPBACK_POD_IP.fullmatch(ip) and not ip.startswith("127.0.0."), ip
        assert status["podIPs"] == [{"ip": ip}]
        assert status["hostIP"] == "127.0.0.1"
        assert status["phase"] == "Running"
        assert status["startTime"]
        assert pod["spec"]["nodeName"] == kubelet.node_name
        for type_ in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
            assert condition(pod, type_)["status"] == "True", type_
        (cs,) = status["containerStatuses"]
        assert cs["ready"] is True and cs["started"] is True
        assert cs["restartCount"] == 0
        assert set(cs["state"]) == {"running"}
        assert cs["image"] == "registry.example.test/tiny-http:1"
        assert cs["imageID"] and cs["containerID"]

        code, info = http("GET", f"http://{ip}:{TINY_PORT}/env")
        assert code == 200, info
        env, argv = info["env"], info["argv"]
        assert env["GREETING"] == "hello" and env["PASSWORD"] == "s3cret"
        assert "OPTIONAL" not in env
        assert (env["POD_NAME"], env["POD_NS"], env["POD_IP"]) == (name, ns, ip)
        assert env["HOSTNAME"] == name
        assert env["MESSAGE"] == f"hello from {name}, $(GREETING), $(UNDEFINED)"
        assert (env["CREDS_password"], env["CREDS_user"]) == ("s3cret", "app")
        # Mount paths in args and env values point at the pod's own files.
        config = argv[argv.index("--config") + 1]
        assert config != "/etc/web/app.yml" and config.endswith("/volumes/settings/app.yml")
        assert argv[-2:] == ["--greeting=hello", "--literal=$(GREETING)"]
        assert http("GET", f"http://{ip}:{TINY_PORT}/file?path={config}") == (200, "mode: test\n")
        assert http("GET", f"http://{ip}:{TINY_PORT}/file?path={env['CREDS_FILE']}") == (
            200,
            "s3cret",
        )
        assert oct(Path(env["CREDS_FILE"]).stat().st_mode & 0o777) == "0o400"
        # Only the listed item of the secret is there.
        assert sorted(p.name for p in Path(env["CREDS_FILE"]).parents[1].iterdir()) == ["db"]

    running = kubelet.processes(ns)
    assert sorted(p.pod_ip for p in running) == sorted(ips)
    assert {p.ports for p in running} == {(TINY_PORT,)}
    assert "GET /env" in kubelet.logs(ns, found[0]["metadata"]["name"])


def test_template_change_rolls_and_the_old_pod_terminates(kubectl, kubelet, kubelet_ns):
    ns = kubelet_ns
    kubectl.apply(tiny_deployment(ns, "web", env=[{"name": "VERSION", "value": "1"}]))
    wait_available(kubectl, ns, "web")
    old = only_pod(kubectl, ns, "web")
    old_name, old_ip = old["metadata"]["name"], old["status"]["podIP"]
    old_pid = http("GET", f"http://{old_ip}:{TINY_PORT}/env")[1]["pid"]

    began = time.monotonic()
    kubectl.patch(
        "deployment",
        "web",
        ns,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "web", "env": [{"name": "VERSION", "value": "2"}]}]
                    }
                }
            }
        },
        "strategic",
    )
    wait_rolled(kubectl, ns, "web")
    print(f"\nrolled to the new template in {time.monotonic() - began:.1f} s")
    new = only_pod(kubectl, ns, "web")
    assert new["metadata"]["name"] != old_name
    assert new["status"]["podIP"] != old_ip
    code, info = http("GET", f"http://{new['status']['podIP']}:{TINY_PORT}/env")
    assert code == 200 and info["env"]["VERSION"] == "2"
    assert kubectl.get("pod", old_name, ns) is None
    eventually(lambda: not alive(old_pid), timeout=10, message="the old process gone")
    assert [p.pod for p in kubelet.processes(ns)] == [new["metadata"]["name"]]
    # The old pod got SIGTERM; nothing needed SIGKILL.
    assert f"{ns}/{old_name}: terminated and deleted" in kubelet.kubelet_log()
    assert f"{ns}/{old_name}/web: still running" not in kubelet.kubelet_log()


def test_liveness_failure_restarts_the_container(kubectl, kubelet, kubelet_ns):
    ns = kubelet_ns
    kubectl.apply(
        tiny_deployment(
            ns,
            "web",
            container={
                "livenessProbe": {
                    "httpGet": {
                        "path": "/healthz",
                        "port": TINY_PORT,
                        "httpHeaders": [{"name": "X-Probe", "value": "liveness"}],
                    },
                    "periodSeconds": 1,
                    "failureThreshold": 2,
                    "timeoutSeconds": 2,
                }
            },
        )
    )
    wait_available(kubectl, ns, "web")
    pod = only_pod(kubectl, ns, "web")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    first_pid = http("GET", f"http://{ip}:{TINY_PORT}/env")[1]["pid"]

    began = time.monotonic()
    assert http("POST", f"http://{ip}:{TINY_PORT}/fail")[0] == 200

    def restarted_and_ready() -> dict | None:
        current = kubectl.get("pod", name, ns)
        (cs,) = current["status"]["containerStatuses"]
        return current if cs["restartCount"] == 1 and cs["ready"] else None

    pod = eventually(restarted_and_ready, timeout=30, message="restarted and ready again")
    print(f"\nliveness failure to ready again: {time.monotonic() - began:.1f} s")
    (cs,) = pod["status"]["containerStatuses"]
    assert cs["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert pod["status"]["podIP"] == ip  # the same pod, restarted in place
    code, info = http("GET", f"http://{ip}:{TINY_PORT}/env")
    assert code == 200 and info["pid"] != first_pid
    assert http("GET", f"http://{ip}:{TINY_PORT}/healthz")[0] == 200
    reasons = {
        e["reason"] for e in kubectl.list("events", ns) if e["involvedObject"]["name"] == name
    }
    assert {"Scheduled", "Started", "Unhealthy", "Killing"} <= reasons
    assert "GET /healthz" in kubelet.logs(ns, name)  # the probes' requests


def test_missing_secret_key_and_unknown_image_wait_like_a_kubelet(kubectl, kubelet, kubelet_ns):
    ns = kubelet_ns
    kubectl.apply(
        secret(ns, "partial", a="1"),
        tiny_deployment(
            ns,
            "needs-b",
            env=[{"name": "B", "valueFrom": {"secretKeyRef": {"name": "partial", "key": "b"}}}],
        ),
        tiny_deployment(
            ns,
            "no-secret",
            env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nowhere", "key": "x"}}}],
        ),
        tiny_deployment(ns, "ghost", image="registry.example.test/ghost:1"),
    )

    def waiting(app: str) -> dict | None:
        for pod in pods(kubectl, ns, app):
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                if "waiting" in cs["state"] and cs["state"]["waiting"].get("message"):
                    return pod
        return None

    needs_b = eventually(lambda: waiting("needs-b"), message="needs-b waiting")
    (cs,) = needs_b["status"]["containerStatuses"]
    assert cs["state"]["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": f"couldn't find key b in Secret {ns}/partial",
    }
    assert needs_b["status"]["phase"] == "Pending"
    assert cs["ready"] is False and cs["restartCount"] == 0
    assert condition(needs_b, "Ready")["reason"] == "ContainersNotReady"
    (cs,) = eventually(lambda: waiting("no-secret"))["status"]["containerStatuses"]
    assert cs["state"]["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "nowhere" not found',
    }
    ghost = eventually(lambda: waiting("ghost"), message="ghost waiting")
    (cs,) = ghost["status"]["containerStatuses"]
    assert cs["state"]["waiting"]["reason"] == "ErrImagePull"
    assert "registry.example.test/ghost:1" in cs["state"]["waiting"]["message"]
    assert ghost["status"]["phase"] == "Pending"
    assert kubelet.processes(ns) == []

    # The kubelet keeps trying: once the key exists, the container starts.
    kubectl.apply(secret(ns, "partial", a="1", b="2"))
    began = time.monotonic()
    wait_available(kubectl, ns, "needs-b", timeout=30)
    print(f"\nstarted {time.monotonic() - began:.1f} s after the key was added")
    ip = only_pod(kubectl, ns, "needs-b")["status"]["podIP"]
    assert http("GET", f"http://{ip}:{TINY_PORT}/env")[1]["env"]["B"] == "2"
    events = [e for e in kubectl.list("events", ns) if e["reason"] == "Failed"]
    assert any("couldn't find key b" in e["message"] for e in events)


def test_crash_loop_backs_off_and_deletion_escalates_to_sigkill(kubectl, kubelet, kubelet_ns):
    ns = kubelet_ns
    kubectl.apply(
        tiny_deployment(
            ns,
            "crash",
            container={
                "command": ["python", "-c", "import sys; print('bye', flush=True); sys.exit(3)"]
            },
        ),
        tiny_deployment(ns, "stubborn", env=[{"name": "IGNORE_SIGTERM", "value": "1"}]),
    )

    def crash_looping() -> dict | None:
        for pod in pods(kubectl, ns, "crash"):
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = cs["state"].get("waiting") or {}
                if cs["restartCount"] >= 2 and waiting.get("reason") == "CrashLoopBackOff":
                    return pod
        return None

    pod = eventually(crash_looping, timeout=30, message="crash in CrashLoopBackOff")
    (cs,) = pod["status"]["containerStatuses"]
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["ready"] is False and "back-off" in cs["state"]["waiting"]["message"]
    assert pod["status"]["phase"] == "Running"  # it did start
    assert kubelet.logs(ns, pod["metadata"]["name"]).count("bye") >= 2

    wait_available(kubectl, ns, "stubborn")
    victim = only_pod(kubectl, ns, "stubborn")
    name = victim["metadata"]["name"]
    pid = http("GET", f"http://{victim['status']['podIP']}:{TINY_PORT}/env")[1]["pid"]
    began = time.monotonic()
    kubectl.run("delete", "pod", name, "-n", ns, "--wait=true", "--timeout=30s")
    took = time.monotonic() - began
    print(f"\nSIGTERM ignored: deleted after {took:.1f} s (grace 2 s)")
    assert 2 <= took < 10
    assert not alive(pid)
    assert f"{ns}/{name}/web: still running after the grace period: SIGKILL" in (
        kubelet.kubelet_log()
    )


# -- Jobs: init containers, restart policies, termination messages --------------------


def statuses(pod: dict, key: str = "containerStatuses") -> dict[str, dict]:
    return {cs["name"]: cs for cs in pod["status"].get(key) or []}


SHARED = {"name": "shared", "mountPath": "/shared"}


def test_job_runs_its_init_containers_in_order_then_completes(
    kubectl, kubelet, kubelet_ns, tmp_path
):
    ns = kubelet_ns
    gate = tmp_path / "gate"
    gate.mkdir()
    kubectl.apply(
        tiny_job(
            ns,
            "train",
            init_containers=[
                # Waits for the test's go, then writes into the emptyDir.
                {
                    "name": "first",
                    "command": python(
                        "import os, sys, time\n"
                        "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
                        "open(sys.argv[2], 'w').write('hello')"
                    ),
                    "args": ["/gate/go", "/shared/greeting"],
                    "volumeMounts": [{"name": "gate", "mountPath": "/gate"}, SHARED],
                },
                # Fails unless the first one is done.
                {
                    "name": "second",
                    "command": python(
                        "import sys; text = open(sys.argv[1]).read()\n"
                        "open(sys.argv[1], 'w').write(text + ' world')"
                    ),
                    "args": ["/shared/greeting"],
                    "volumeMounts": [SHARED],
                },
            ],
            containers=[
                {
                    "name": "main",
                    "command": python(
                        "import sys; print('read:', open(sys.argv[1]).read(), flush=True)"
                    ),
                    "args": ["/shared/greeting"],
                    "volumeMounts": [SHARED],
                }
            ],
            volumes=[
                {"name": "gate", "hostPath": {"path": str(gate)}},
                {"name": "shared", "emptyDir": {}},
            ],
        )
    )

    def first_running() -> dict | None:
        for pod in kubectl.list("pods", ns, "app=train"):
            first = statuses(pod, "initContainerStatuses").get("first") or {}
            if "running" in first.get("state", {}):
                return pod
        return None

    # While the first init container runs, nothing else does.
    pod = eventually(first_running, timeout=30, message="init container first running")
    name = pod["metadata"]["name"]
    assert pod["status"]["phase"] == "Pending"
    assert condition(pod, "Initialized") == dict(
        condition(pod, "Initialized"),
        status="False",
        reason="ContainersNotInitialized",
        message="containers with incomplete status: [first second]",
    )
    assert condition(pod, "Ready")["reason"] == "ContainersNotReady"
    init = statuses(pod, "initContainerStatuses")
    assert list(init) == ["first", "second"]
    assert init["first"]["ready"] is False and "started" not in init["first"]
    assert init["second"]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert statuses(pod)["main"]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert [p.container for p in kubelet.processes(ns)] == ["first"]

    began = time.monotonic()
    (gate / "go").touch()
    job = wait_job(kubectl, ns, "train", "Complete")
    print(f"\ninit containers and container run, Job Complete in {time.monotonic() - began:.1f} s")
    assert job["status"]["succeeded"] == 1 and not job["status"].get("failed")
    assert not job["status"].get("active")

    pod = kubectl.get("pod", name, ns)
    assert pod["status"]["phase"] == "Succeeded"
    init = statuses(pod, "initContainerStatuses")
    for cs in init.values():
        done = cs["state"]["terminated"]
        assert (done["exitCode"], done["reason"]) == (0, "Completed")
        assert cs["ready"] is True and cs["restartCount"] == 0 and cs["containerID"]
        assert "message" not in done
    assert (
        init["first"]["state"]["terminated"]["finishedAt"]
        <= init["second"]["state"]["terminated"]["startedAt"]
    )
    main = statuses(pod)["main"]
    assert main["state"]["terminated"]["exitCode"] == 0
    assert main["state"]["terminated"]["reason"] == "Completed"
    assert main["ready"] is False and main["started"] is False
    assert (
        init["second"]["state"]["terminated"]["finishedAt"]
        <= main["state"]["terminated"]["startedAt"]
    )
    assert kubelet.logs(ns, name, "main") == "read: hello world\n"
    # As a kubelet reports a completed pod.
    assert condition(pod, "Initialized")["status"] == "True"
    assert condition(pod, "Initialized")["reason"] == "PodCompleted"
    for type_ in ("Ready", "ContainersReady"):
        assert condition(pod, type_)["status"] == "False", type_
        assert condition(pod, type_)["reason"] == "PodCompleted", type_
    assert kubelet.processes(ns) == []
    started = {
        e["involvedObject"].get("fieldPath")
        for e in kubectl.list("events", ns)
        if e["reason"] == "Started" and e["involvedObject"]["name"] == name
    }
    assert started == {
        "spec.initContainers{first}",
        "spec.initContainers{second}",
        "spec.containers{main}",
    }


def test_failed_init_container_fails_the_pod_and_the_job(kubectl, kubelet, kubelet_ns):
    ns = kubelet_ns
    kubectl.apply(
        tiny_job(
            ns,
            "broken",
            backoff_limit=0,
            init_containers=[
                {
                    "name": "train",
                    "command": python(
                        "import sys\nfor i in range(100): print(f'line {i:03d}')\nsys.exit(3)"
                    ),
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ],
            containers=[{"name": "upload", "command": python("print('never')")}],
        )
    )
    began = time.monotonic()
    job = wait_job(kubectl, ns, "broken", "Failed")
    print(f"\ninit container failed, Job Failed in {time.monotonic() - began:.1f} s")
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 1 and not job["status"].get("succeeded")

    pod = only_pod(kubectl, ns, "broken")  # no second attempt
    name = pod["metadata"]["name"]
    assert pod["status"]["phase"] == "Failed"
    train = statuses(pod, "initContainerStatuses")["train"]
    done = train["state"]["terminated"]
    assert (done["exitCode"], done["reason"]) == (3, "Error")
    assert train["ready"] is False and train["restartCount"] == 0
    # FallbackToLogsOnError with an empty termination log: the last 80 lines of its output.
    assert done["message"] == "".join(f"line {i:03d}\n" for i in range(20, 100))
    upload = statuses(pod)["upload"]
    assert upload["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert upload["restartCount"] == 0 and "containerID" not in upload
    assert kubelet.logs(ns, name, "upload") == ""
    assert condition(pod, "Initialized") == dict(
        condition(pod, "Initialized"),
        status="False",
        reason="ContainersNotInitialized",
        message="containers with incomplete status: [train]",
    )
    assert condition(pod, "Ready")["message"] == "containers with unready status: [upload]"
    assert kubelet.processes(ns) == []


def test_termination_messages_and_restart_policy_on_failure(kubectl, kubelet, kubelet_ns):
    ns = kubelet_ns
    first_run = (
        "import os, sys\n"
        "marker = sys.argv[1]\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close()\n"
    )
    noisy_lines = "".join(f"noisy line {i:03d} " + "x" * 24 + "\n" for i in range(100))
    kubectl.apply(
        tiny_job(
            ns,
            "report",
            restart_policy="OnFailure",
            backoff_limit=6,
            init_containers=[
                {  # fails once, is restarted in place, then succeeds
                    "name": "flaky",
                    "command": python(first_run + "    sys.exit(1)"),
                    "args": ["/shared/flaky-ran"],
                    "volumeMounts": [SHARED],
                }
            ],
            containers=[
                {
                    "name": "report",  # writes JSON where its args say the termination log is
                    "command": python(
                        "import json, sys\n"
                        "json.dump({'model': 'shop', 'digest': 'sha256:abc'}, "
                        "open(sys.argv[1], 'w'))"
                    ),
                    "args": ["/dev/termination-log"],
                },
                {
                    "name": "custom",  # its own path, through the env; only the last 4096 bytes
                    "terminationMessagePath": "/var/run/botenv/message",
                    "env": [{"name": "MESSAGE_FILE", "value": "/var/run/botenv/message"}],
                    "command": python(
                        "import os\nopen(os.environ['MESSAGE_FILE'], 'w').write('x' * 5000 + 'END')"
                    ),
                },
                {
                    "name": "noisy",  # fails once with an empty termination log
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "env": [{"name": "LINES", "value": noisy_lines}],
                    "command": python(
                        first_run + "    print(os.environ['LINES'], end='')\n"
                        "    sys.exit(1)\n"
                        "print('second run')"
                    ),
                    "args": ["/shared/noisy-ran"],
                    "volumeMounts": [SHARED],
                },
            ],
            volumes=[{"name": "shared", "emptyDir": {}}],
        )
    )
    began = time.monotonic()
    job = wait_job(kubectl, ns, "report", "Complete")
    print(f"\ntwo restarts in place, Job Complete in {time.monotonic() - began:.1f} s")
    assert job["status"]["succeeded"] == 1 and not job["status"].get("failed")

    pod = only_pod(kubectl, ns, "report")
    assert pod["status"]["phase"] == "Succeeded"
    flaky = statuses(pod, "initContainerStatuses")["flaky"]
    assert flaky["restartCount"] == 1
    assert flaky["lastState"]["terminated"]["exitCode"] == 1
    assert flaky["state"]["terminated"]["exitCode"] == 0 and flaky["ready"] is True
    containers = statuses(pod)
    report = containers["report"]
    assert report["restartCount"] == 0  # OnFailure: an exit 0 is not restarted
    assert json.loads(report["state"]["terminated"]["message"]) == {
        "model": "shop",
        "digest": "sha256:abc",
    }
    custom = containers["custom"]["state"]["terminated"]["message"]
    assert len(custom) == 4096 and custom.endswith("xxEND")
    noisy = containers["noisy"]
    assert noisy["restartCount"] == 1
    failed = noisy["lastState"]["terminated"]
    assert failed["exitCode"] == 1
    # The last 80 lines (3200 bytes here), of which the last 2048 bytes.
    assert failed["message"] == noisy_lines[-2048:]
    # The second run exited 0: no fallback to its logs.
    assert "message" not in noisy["state"]["terminated"]
    assert kubelet.logs(ns, pod["metadata"]["name"], "noisy").endswith("second run\n")


def test_job_retries_a_failed_pod_up_to_its_backoff_limit(kubectl, kubelet, kubelet_ns, tmp_path):
    ns = kubelet_ns
    state = tmp_path / "state"
    state.mkdir()
    kubectl.apply(
        tiny_job(
            ns,
            "retry",
            backoff_limit=1,
            containers=[
                {  # fails in the first pod, succeeds in the second
                    "name": "main",
                    "command": python(
                        "import os, sys\n"
                        "if not os.path.exists(sys.argv[1]):\n"
                        "    open(sys.argv[1], 'w').close(); sys.exit(2)"
                    ),
                    "args": ["/state/ran"],
                    "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                }
            ],
            volumes=[{"name": "state", "hostPath": {"path": str(state)}}],
        )
    )
    began = time.monotonic()
    job = wait_job(kubectl, ns, "retry", "Complete", timeout=60)
    print(f"\nfirst pod failed, second succeeded: Job Complete in {time.monotonic() - began:.1f} s")
    assert (job["status"]["failed"], job["status"]["succeeded"]) == (1, 1)
    # creationTimestamp has whole seconds: order them by phase.
    found = sorted(kubectl.list("pods", ns, "app=retry"), key=lambda p: p["status"]["phase"])
    assert [p["status"]["phase"] for p in found] == ["Failed", "Succeeded"]
    failed, succeeded = (statuses(p)["main"] for p in found)
    assert failed["state"]["terminated"]["exitCode"] == 2
    assert failed["restartCount"] == 0  # restartPolicy Never
    assert (
        failed["state"]["terminated"]["finishedAt"] <= succeeded["state"]["terminated"]["startedAt"]
    )
    assert condition(found[0], "Ready")["reason"] == "ContainersNotReady"
    assert condition(found[1], "Ready")["reason"] == "PodCompleted"


def test_job_deadline_deletes_the_pod_and_kills_its_init_container(kubectl, kubelet, kubelet_ns):
    ns = kubelet_ns
    kubectl.apply(
        tiny_job(
            ns,
            "slow",
            spec={"activeDeadlineSeconds": 2},
            init_containers=[{"name": "train", "command": python("import time; time.sleep(600)")}],
            containers=[{"name": "upload", "command": python("print('never')")}],
        )
    )
    (process,) = eventually(
        lambda: kubelet.processes(ns), timeout=30, message="the init container running"
    )
    assert process.container == "train"
    began = time.monotonic()
    job = wait_job(kubectl, ns, "slow", "Failed")
    assert condition(job, "Failed")["reason"] == "DeadlineExceeded"
    eventually(
        lambda: not kubectl.list("pods", ns, "app=slow") and not alive(process.pid),
        timeout=20,
        message="the pod deleted, its process gone",
    )
    print(
        f"\ndeadline passed: pod deleted and process gone "
        f"{time.monotonic() - began:.1f} s after it started"
    )


class _Outside(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"from outside the cluster"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_service_urls_reach_ready_pods_through_the_proxy(kubectl, kubelet, kubelet_ns):
    ns = kubelet_ns
    outside = ThreadingHTTPServer(("127.0.0.1", 0), _Outside)
    threading.Thread(target=outside.serve_forever, daemon=True).start()
    kubelet.service_hosts[f"outside.{ns}:9999"] = f"127.0.0.1:{outside.server_address[1]}"
    try:
        kubectl.apply(
            tiny_deployment(ns, "backend"),
            service(ns, "backend", {"app": "backend"}, 80),  # targetPort by name
            configmap(
                ns,
                "urls",
                **{
                    "urls.yml": f"backend: http://backend.{ns}.svc/whoami\n"
                    f"other: http://backend.{ns}.svc:80/healthz\n"
                },
            ),
            tiny_deployment(
                ns,
                "frontend",
                env=[
                    {
                        "name": "BACKEND",
                        "value": f"http://backend.{ns}.svc.cluster.local:80/whoami",
                    },
                    {"name": "OUTSIDE", "value": f"http://outside.{ns}.svc:9999/x"},
                ],
                container={"volumeMounts": [{"name": "urls", "mountPath": "/etc/urls"}]},
                pod={"volumes": [{"name": "urls", "configMap": {"name": "urls"}}]},
            ),
        )
        wait_available(kubectl, ns, "backend")
        wait_available(kubectl, ns, "frontend")
        front_ip = only_pod(kubectl, ns, "frontend")["status"]["podIP"]
        env = http("GET", f"http://{front_ip}:{TINY_PORT}/env")[1]["env"]
        assert ".svc" not in env["BACKEND"] and env["BACKEND"].endswith("/whoami")
        written = (
            Path(kubelet.pod_dir(ns, only_pod(kubectl, ns, "frontend")["metadata"]["name"]))
            / "volumes"
            / "urls"
            / "urls.yml"
        )
        urls = dict(line.split(": ", 1) for line in written.read_text().splitlines())
        assert ".svc" not in written.read_text()
        assert urls["backend"].rsplit("/", 1)[0] == env["BACKEND"].rsplit("/", 1)[0]

        def fetch(url: str) -> tuple[int, object]:
            return http("GET", f"http://{front_ip}:{TINY_PORT}/fetch?url={url}")

        backend = only_pod(kubectl, ns, "backend")["metadata"]["name"]
        # From inside the frontend pod, and from its mounted file's URL.
        assert fetch(env["BACKEND"]) == (200, {"pod": backend})
        assert fetch(urls["backend"]) == (200, {"pod": backend})
        assert fetch(env["OUTSIDE"]) == (200, "from outside the cluster")

        # The Service follows a roll: the new pod answers at the same address.
        kubectl.patch(
            "deployment",
            "backend",
            ns,
            {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}},
        )
        wait_rolled(kubectl, ns, "backend")
        new_backend = only_pod(kubectl, ns, "backend")["metadata"]["name"]
        assert new_backend != backend
        assert eventually(lambda: fetch(env["BACKEND"]) == (200, {"pod": new_backend}), timeout=10)
        # No ready pod: connections are refused.
        kubectl.run("scale", "deployment/backend", "-n", ns, "--replicas=0")
        eventually(
            lambda: not pods(kubectl, ns, "backend") and fetch(env["BACKEND"])[0] == 502,
            timeout=20,
            message="backend refused with no pods",
        )
    finally:
        outside.shutdown()
        kubelet.service_hosts.pop(f"outside.{ns}:9999", None)


# -- a real Rasa environment -------------------------------------------------------------

ACTIONS_IMAGE = "registry.example.test/shop-actions:1"
ACTIONS = """
from rasa_sdk import Action


class ActionLookupOrder(Action):
    def name(self):
        return "action_lookup_order"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Order 42 ships today (from the action server).")
        return []
"""
MODEL_SERVER = "botenv-model-server.botenv-system:8080"


def _shop_project(root: Path) -> Path:
    project = write_project(
        root,
        intents={"greet": ["hello"], "order": ["order"]},
        responses={"greet": "Hello from the shop!", "order": "unused"},
    )
    domain = project / "domain.yml"
    domain.write_text(domain.read_text() + "actions:\n  - action_lookup_order\n")
    rules = project / "data" / "rules.yml"
    rules.write_text(
        rules.read_text().replace("action: utter_order", "action: action_lookup_order")
    )
    return project


def _without_owner(obj: dict) -> dict:
    # No BotEnvironment exists here (the operator is not running): an ownerReference to a
    # missing owner would have the garbage collector delete the object.
    obj = dict(obj, metadata=dict(obj["metadata"]))
    obj["metadata"].pop("ownerReferences", None)
    return obj


@pytest.mark.rasa
@pytest.mark.timeout(900)
def test_rasa_environment_as_botenv_renders_it_becomes_ready(
    kubectl, kubelet, kubelet_ns, rasa_python_venv, tmp_path
):
    ns = kubelet_ns
    model = train(_shop_project(tmp_path / "project"), tmp_path / "trained", "shop")
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / "actions.py").write_text(ACTIONS)

    # Exactly the children botenv renders for this environment.
    body = environment(
        "shop",
        ns,
        auth={"tokenSecretRef": {"name": "rasa-auth"}},
        credentialsSecretRef={"name": "rasa-credentials"},
        actionServer={"image": ACTIONS_IMAGE},
    )
    rendered = render_all(body)
    spec = rendered.spec
    tag = spec.model_tag  # the environment's name by default
    assert rendered.container["readinessProbe"]["exec"]["command"] == [
        "python",
        "/etc/botenv/rasa/readiness.py",
    ]
    assert rendered.endpoints["models"]["url"] == (  # pinned: Restart is the default rollout
        f"http://botenv-model-server.botenv-system.svc:8080/models/{ns}/tags/{tag}"
        "?digest=${BOTENV_MODEL_DIGEST}"
    )
    served = tmp_path / "served" / "models" / ns / "tags"
    served.mkdir(parents=True)
    shutil.copyfile(model, served / tag)

    # The model server of the install is a tiny file server here, a pod in this namespace
    # behind Service `models`, that checks the environment's pull token.
    kubelet.images[ACTIONS_IMAGE] = rasa_sdk_image(actions)
    kubelet.service_hosts[MODEL_SERVER] = kubelet.service_address(ns, "models", 8080)
    try:
        began = time.monotonic()
        kubectl.apply(
            secret(ns, "rasa-auth", token="s3cret-token"),
            secret(ns, "rasa-credentials", **{"credentials.yml": "rest:\n"}),
            secret(ns, "rasa-shop-pull", token="pull-token"),
            tiny_deployment(
                ns,
                "models",
                env=[
                    {"name": "SERVE_DIR", "value": "/srv/models"},
                    {
                        "name": "REQUIRE_TOKEN",
                        "valueFrom": {"secretKeyRef": {"name": "rasa-shop-pull", "key": "token"}},
                    },
                ],
                container={"volumeMounts": [{"name": "models", "mountPath": "/srv/models"}]},
                pod={
                    "volumes": [{"name": "models", "hostPath": {"path": str(tmp_path / "served")}}]
                },
            ),
            service(ns, "models", {"app": "models"}, 8080),
            *(
                _without_owner(o)
                for o in (
                    rendered.configmap,
                    rendered.deployment,
                    rendered.service,
                    actionserver.deployment(spec, image=ACTIONS_IMAGE, tag=tag, uid=UID),
                    actionserver.service(spec, tag=tag, uid=UID),
                )
            ),
        )
        wait_available(kubectl, ns, "rasa-shop-actions", timeout=120)
        actions_ready = time.monotonic() - began
        wait_available(kubectl, ns, "rasa-shop", timeout=240)
        ready = time.monotonic() - began
        print(f"\naction server Available after {actions_ready:.1f} s, Rasa after {ready:.1f} s")

        (pod,) = kubectl.list(
            "pods", ns, "botenv.dev/environment=shop,app.kubernetes.io/component=rasa-server"
        )
        ip = pod["status"]["podIP"]
        (cs,) = pod["status"]["containerStatuses"]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
        # Ready came from the exec probe (readiness.py asks 127.0.0.1:5005 with the token).
        code, status = http("GET", f"http://{ip}:5005/status?token=s3cret-token")
        assert code == 200 and status["model_id"] == model_id(model)
        assert http("GET", f"http://{ip}:5005/status")[0] == 401
        # The REST channel (credentials from the Secret volume) and the action server
        # (action_endpoint through its Service).
        code, replies = http(
            "POST",
            f"http://{ip}:5005/webhooks/rest/webhook?token=s3cret-token",
            {"sender": "kubelet", "message": "order"},
            timeout=30,
        )
        assert code == 200, replies
        assert [r["text"] for r in replies] == ["Order 42 ships today (from the action server)."]
        code, replies = http(
            "POST",
            f"http://{ip}:5005/webhooks/rest/webhook?token=s3cret-token",
            {"sender": "kubelet", "message": "hello"},
        )
        assert [r["text"] for r in replies] == ["Hello from the shop!"]
        (process,) = [p for p in kubelet.processes(ns) if p.container == "rasa"]
        assert process.argv[process.argv.index("--interface") + 1] == ip
        assert "s3cret-token" in process.argv  # $(BOTENV_AUTH_TOKEN) expanded
        assert "/etc/botenv" not in " ".join(process.argv)
    finally:
        kubelet.images.pop(ACTIONS_IMAGE, None)
        kubelet.service_hosts.pop(MODEL_SERVER, None)
