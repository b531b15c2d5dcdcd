"""Cold-start convergence and tag-move fan-out of the botenv operator, side by side with
a bare kopf operator (bench/baseline_operator.py) on the same real API server.

    .venv/bin/python bench/convergence.py [--environments 500] [--tag-users 50]
                                          [--resync 10] [--unrelated 5000] [--profile DIR]

Phases: the bare operator's cold start; botenv's cold start and a tag move; then botenv
restarted on what it made (a warm start), three periodic resyncs, and unrelated Secrets and
ConfigMaps created in the namespace it watches. Prints figures; asserts nothing. Needs the
local control plane (built once). With --profile, py-spy (install it into .venv by hand: it
is no dependency) samples botenv during the cold start and the tag move.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from botenv.local.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "--request-timeout=60s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def apply(kubeconfig: Path, docs: list[dict]) -> None:
    for i in range(0, len(docs), 100):
        kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs[i : i + 100]))


def create(kubeconfig: Path, docs: list[dict]) -> None:
    """One POST per object (faster than apply for many new objects)."""
    for i in range(0, len(docs), 500):
        items = {"apiVersion": "v1", "kind": "List", "items": docs[i : i + 500]}
        kubectl(kubeconfig, "create", "-f", "-", "-o", "name", stdin=json.dumps(items))


def environments(namespace: str, count: int, tag: str) -> list[dict]:
    return [
        {
            "apiVersion": "botenv.dev/v1alpha1",
            "kind": "BotEnvironment",
            "metadata": {"name": f"env-{i:04d}", "namespace": namespace},
            "spec": {"modelTag": tag},
        }
        for i in range(count)
    ]


def unrelated(namespace: str, count: int) -> list[dict]:
    """Secrets and ConfigMaps (half each) that are not botenv's: no label, no owner."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret" if i % 2 else "ConfigMap",
            "metadata": {"name": f"unrelated-{i:05d}", "namespace": namespace},
            "data": {"value": "dW5yZWxhdGVk" if i % 2 else "unrelated"},
        }
        for i in range(count)
    ]


class Api:
    """Plain GETs on the API server with the admin token: polling through kubectl would
    start a process and list whole objects four times a second, a load on the two cores
    that grows with the objects botenv writes."""

    def __init__(self, cp: ControlPlane) -> None:
        self.server, self.token = cp.server, cp.admin_token
        self.context = ssl.create_default_context()
        self.context.check_hostname, self.context.verify_mode = False, ssl.CERT_NONE

    def get(self, path: str) -> dict:
        request = urllib.request.Request(
            f"{self.server}{path}",
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60, context=self.context) as answer:
            return json.loads(answer.read())

    def patch(self, path: str, patch: dict) -> None:
        request = urllib.request.Request(
            f"{self.server}{path}",
            data=json.dumps(patch).encode(),
            method="PATCH",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/merge-patch+json",
            },
        )
        with urllib.request.urlopen(request, timeout=60, context=self.context) as answer:
            answer.read()

    def watch_until(self, path: str, done: Callable[[dict[str, dict]], bool]) -> threading.Event:
        """Watch a list from now on (`path` with its query); the event is set when
        `done(name -> object)` first holds. Events come as they happen: no polling delay."""
        listed = self.get(path)
        seen = {o["metadata"]["name"]: o for o in listed["items"]}
        version = listed["metadata"]["resourceVersion"]
        finished = threading.Event()

        def follow() -> None:
            request = urllib.request.Request(
                f"{self.server}{path}&watch=1&resourceVersion={version}",
                headers={"Authorization": f"Bearer {self.token}"},
            )
            with urllib.request.urlopen(request, timeout=600, context=self.context) as stream:
                for line in stream:
                    event = json.loads(line)
                    seen[event["object"]["metadata"]["name"]] = event["object"]
                    if done(seen):
                        finished.set()
                        return

        threading.Thread(target=follow, daemon=True).start()
        return finished

    def count(self, path: str) -> int:
        """How many objects a list holds, from a list of one (remainingItemCount)."""
        page = self.get(f"{path}?limit=1")
        return len(page["items"]) + int(page["metadata"].get("remainingItemCount") or 0)

    def deployments(self, namespace: str, query: str = "") -> list[dict]:
        return self.get(f"/apis/apps/v1/namespaces/{namespace}/deployments{query}")["items"]


def deployments(api: Api, namespace: str) -> int:
    return api.count(f"/apis/apps/v1/namespaces/{namespace}/deployments")


def converged_environments(api: Api, namespace: str) -> int:
    items = api.get(f"/apis/botenv.dev/v1alpha1/namespaces/{namespace}/botenvironments")["items"]
    return sum(
        1
        for b in items
        if (b.get("status") or {}).get("observedGeneration") == b["metadata"]["generation"]
    )


def rolled_out(api: Api, namespace: str) -> bool:
    """The controller manager has caught up with every Deployment (its ReplicaSet and pods
    made): it works at 20 requests/s, long after the operators are done."""
    return all(
        (d.get("status") or {}).get("observedGeneration") == d["metadata"]["generation"]
        and (d.get("status") or {}).get("updatedReplicas") == d["spec"]["replicas"]
        for d in api.deployments(namespace)
    )


def wait(what: str, check: Callable[[], bool], timeout: float = 300) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.25)
    return time.monotonic() - began


def status_mb(pid: int, field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class CPU:
    """CPU seconds each process used between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}

    def __enter__(self) -> CPU:
        self._began = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *_: object) -> None:
        self.used = {name: cpu_seconds(pid) - self._began[name] for name, pid in self.pids.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Metrics:
    """botenv's /metrics (its health port), read by the benchmark."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        with urllib.request.urlopen(self.url, timeout=10) as answer:
            text = answer.read().decode()
        return [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def calls(self) -> collections.Counter[str]:
        """API calls botenv made so far, "verb kind" -> count (writes and reads)."""
        found: collections.Counter[str] = collections.Counter()
        for name, labels, value in self.samples():
            if name in ("botenv_api_writes_total", "botenv_api_reads_total"):
                found[f"{labels['verb']} {labels['kind']}"] += int(value)
        return found

    def writes(self) -> int:
        return sum(int(v) for name, _, v in self.samples() if name == "botenv_api_writes_total")

    def reconciles(self, kind: str = "") -> int:
        return sum(
            int(v)
            for name, labels, v in self.samples()
            if name == "botenv_reconcile_total" and kind in ("", labels["kind"])
        )

    def settle(self, quiet: float = 3.0, timeout: float = 300) -> None:
        """Until no reconcile finished and none waited for `quiet` seconds."""
        began, last, since = time.monotonic(), -1, time.monotonic()
        while time.monotonic() - began < timeout:
            samples = self.samples()
            done = sum(int(v) for n, _, v in samples if n == "botenv_reconcile_total")
            depth = sum(v for n, _, v in samples if n == "botenv_workqueue_depth")
            if done != last or depth:
                last, since = done, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.5)
        raise SystemExit("botenv did not settle")


def per_environment(calls: collections.Counter[str], n: int) -> str:
    total = sum(calls.values())
    parts = ", ".join(f"{what} {c / n:.2f}" for what, c in calls.most_common() if c)
    return f"{total / n:.2f} ({parts})"


RUNNING: list[subprocess.Popen] = []


def run_operator(
    kubeconfig: Path, argv: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen:
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv,
            env={**os.environ, "KUBECONFIG": str(kubeconfig), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    RUNNING.append(proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Stop an operator; kill it if it does not stop (it retries while the API is gone)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def profile(directory: str, pid: int, phase: str) -> subprocess.Popen | None:
    """py-spy samples `pid` into DIR/PHASE.txt (raw, one line per stack) until SIGINT."""
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "--rate",
            "200",
            "--output",
            str(Path(directory) / f"{phase}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    RUNNING.append(spy)
    return spy


def profile_server(
    directory: str, cp: ControlPlane, seconds: int, phase: str
) -> threading.Thread | None:
    """The API server's own CPU profile (Go pprof) over the next `seconds`, into DIR:
    read it with `go tool pprof -top DIR/kube-apiserver-PHASE.pprof`."""
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)

    def fetch() -> None:
        request = urllib.request.Request(
            f"{cp.server}/debug/pprof/profile?seconds={seconds}",
            headers={"Authorization": f"Bearer {cp.admin_token}"},
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        with urllib.request.urlopen(request, timeout=seconds + 30, context=insecure) as r:
            (Path(directory) / f"kube-apiserver-{phase}.pprof").write_bytes(r.read())

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    return thread


def end_profile(spy: subprocess.Popen | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait()


def botenv(
    kc: Path, namespace: str, models: Path, resync: float, tmp: str, log: str, workers: int
) -> tuple[subprocess.Popen, Metrics]:
    port = free_port()
    env = {"BOTENV_RESYNC_SECONDS": str(resync), "BOTENV_STORAGE_LOCAL_ROOTS": str(models)}
    if workers:
        env["BOTENV_WORKERS"] = str(workers)
    proc = run_operator(
        kc,
        [
            str(Path(sys.executable).parent / "botenv"),
            "operator",
            "-n",
            namespace,
            "--health-address",
            f"127.0.0.1:{port}",
        ],
        env,
        Path(tmp) / log,
    )
    return proc, Metrics(port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--environments", type=int, default=500)
    parser.add_argument("--tag-users", type=int, default=50)
    parser.add_argument(
        "--resync", type=float, default=20, help="botenv's resync period after its restart (s)"
    )
    parser.add_argument("--unrelated", type=int, default=5000, help="Secrets and ConfigMaps")
    parser.add_argument("--workers", type=int, default=0, help="BOTENV_WORKERS (0: its default)")
    parser.add_argument("--profile", default="", help="write py-spy profiles of botenv here")
    args = parser.parse_args()
    n, users = args.environments, args.tag_users
    venv_bin = Path(sys.executable).parent

    tmp = tempfile.mkdtemp(prefix="botenv-bench-")
    print(f"operator logs in {tmp}", flush=True)
    with ControlPlane(Path(tmp) / "cluster") as cp:
        kc, api = cp.kubeconfig, Api(cp)
        server = cp.pids
        kubectl(kc, "apply", "-f", str(REPO / "crds"))
        kubectl(kc, "wait", "--for=condition=Established", "crd", "--all")
        base: dict[str, object] = {}
        mine: dict[str, object] = {}

        # Baseline: a bare kopf operator, one Deployment per resource.
        kubectl(kc, "create", "namespace", "bench-baseline")
        apply(kc, environments("bench-baseline", n, "t"))
        proc = run_operator(
            kc,
            [
                str(venv_bin / "kopf"),
                "run",
                "--standalone",
                "-A",
                str(REPO / "bench" / "baseline_operator.py"),
            ],
            {},
            Path(tmp) / "baseline.log",
        )
        server_spy = profile_server(args.profile, cp, 5, "baseline")
        with CPU({"operator": proc.pid, **server}) as cpu:
            base["cold"] = wait(
                "baseline Deployments", lambda: deployments(api, "bench-baseline") >= n
            )
        base["cpu"] = cpu.used
        if server_spy is not None:
            server_spy.join()
        base["peak"] = status_mb(proc.pid, "VmHWM")
        if args.unrelated:
            time.sleep(3)
            base["rss_before"] = status_mb(proc.pid, "VmRSS")
            create(kc, unrelated("bench-baseline", args.unrelated))
            time.sleep(5)
            base["rss_after"] = status_mb(proc.pid, "VmRSS")
        stop(proc)
        # Its controller-manager work must not weigh on botenv's cold start.
        wait("the baseline's ReplicaSets and pods", lambda: rolled_out(api, "bench-baseline"), 900)

        # botenv: N environments on one tag (+ a tag with `users` environments to move).
        kubectl(kc, "create", "namespace", "bench-botenv")
        # Models on `local` storage: the operator runs here and resolves them from files.
        models = Path(tmp) / "models"
        models.mkdir()
        for name in ("m1.tar.gz", "m2.tar.gz"):
            (models / name).write_bytes(name.encode())
        tag = {
            "apiVersion": "botenv.dev/v1alpha1",
            "kind": "ModelTag",
            "metadata": {"namespace": "bench-botenv"},
            "spec": {"model": "m1.tar.gz", "storage": {"provider": "local", "path": str(models)}},
        }
        apply(
            kc,
            [
                {**tag, "metadata": {**tag["metadata"], "name": "many"}},
                {**tag, "metadata": {**tag["metadata"], "name": "moved"}},
            ],
        )
        docs = environments("bench-botenv", n, "many")
        for doc in docs[:users]:
            doc["spec"]["modelTag"] = "moved"
        apply(kc, docs)
        proc, metrics = botenv(kc, "bench-botenv", models, 3600, tmp, "botenv.log", args.workers)
        spy = profile(args.profile, proc.pid, "cold-start")
        server_spy = profile_server(args.profile, cp, 15, "botenv")
        with CPU({"operator": proc.pid, **server}) as cpu:
            mine["cold"] = wait("botenv Deployments", lambda: deployments(api, "bench-botenv") >= n)
            mine["status"] = mine["cold"] + wait(
                "botenv status", lambda: converged_environments(api, "bench-botenv") >= n
            )
        end_profile(spy)
        if server_spy is not None:
            server_spy.join()
        mine["cpu"] = cpu.used
        # Until the controller manager made every ReplicaSet and pod (20 requests/s) and
        # botenv reported what it did: all a cold start costs, and a quiet cluster for the move.
        wait("botenv's ReplicaSets and pods", lambda: rolled_out(api, "bench-botenv"), 900)
        metrics.settle()
        mine["cold_calls"] = calls = metrics.calls()
        mine["cold_reconciles"] = (
            metrics.reconciles("BotEnvironment"),
            metrics.reconciles("ModelTag"),
        )

        first: list[float] = []

        def moved(deployments: dict[str, dict]) -> bool:
            done = sum(
                1
                for d in deployments.values()
                if d["spec"]["template"]["metadata"]["annotations"].get("botenv.dev/model")
                == "m2.tar.gz"
            )
            if done and not first:
                first.append(time.monotonic())
            return done >= users

        spy = profile(args.profile, proc.pid, "tag-move")
        finished = api.watch_until(
            "/apis/apps/v1/namespaces/bench-botenv/deployments"
            "?labelSelector=botenv.dev%2Ftag%3Dmoved",
            moved,
        )
        began = time.monotonic()
        api.patch(
            "/apis/botenv.dev/v1alpha1/namespaces/bench-botenv/modeltags/moved",
            {"spec": {"model": "m2.tar.gz"}},
        )
        if not finished.wait(300):
            raise SystemExit("timed out waiting for the tag move")
        mine["move"] = time.monotonic() - began
        mine["move_first"] = first[0] - began
        end_profile(spy)
        metrics.settle()
        mine["move_calls"] = metrics.calls() - calls
        mine["peak"] = status_mb(proc.pid, "VmHWM")
        # The warm start must find nothing new to report: the controller manager done.
        wait("botenv's ReplicaSets and pods", lambda: rolled_out(api, "bench-botenv"), 900)
        metrics.settle()
        stop(proc)

        # botenv again, on what it made: a warm start, resyncs, unrelated objects.
        proc, metrics = botenv(
            kc, "bench-botenv", models, args.resync, tmp, "botenv-warm.log", args.workers
        )
        wait("botenv's health port", lambda: _answers(metrics), timeout=60)
        # From its health port (imports done) until every object was reconciled once.
        mine["warm"] = wait("the warm start", lambda: metrics.reconciles() >= n + 2)
        metrics.settle(quiet=2)
        mine["warm_calls"] = calls = metrics.calls()
        writes = metrics.writes()
        done = metrics.reconciles()
        wait("three resyncs", lambda: metrics.reconciles() >= done + 3 * (n + 2))
        metrics.settle()
        mine["idle_writes"] = metrics.writes() - writes
        if args.unrelated:
            mine["rss_before"] = status_mb(proc.pid, "VmRSS")
            create(kc, unrelated("bench-botenv", args.unrelated))
            done = metrics.reconciles()
            wait("a resync", lambda: metrics.reconciles() >= done + n + 2)
            metrics.settle()
            mine["rss_after"] = status_mb(proc.pid, "VmRSS")
        mine["warm_peak"] = status_mb(proc.pid, "VmHWM")
        stop(proc)

    report(n, users, args, base, mine)
    return 0


def _answers(metrics: Metrics) -> bool:
    try:
        metrics.samples()
        return True
    except OSError:
        return False


def report(n: int, users: int, args: argparse.Namespace, base: dict, mine: dict) -> None:
    def row(what: str, b: str, m: str, ratio: str = "") -> None:
        print(f"{what:<48}{b:>14}{m:>12}{ratio:>8}")

    row("", "baseline kopf", "botenv", "ratio")
    row(
        f"{n} environments -> Deployments (s)",
        f"{base['cold']:.1f}",
        f"{mine['cold']:.1f}",
        f"{mine['cold'] / base['cold']:.2f}",
    )
    row(
        f"{n} environments -> status written (s)",
        "",
        f"{mine['status']:.1f}",
        f"{mine['status'] / base['cold']:.2f}",
    )
    for who, label in (
        ("operator", "operator"),
        ("kube-apiserver", "API server"),
        ("etcd", "etcd"),
        ("kube-controller-manager", "controller manager"),
    ):
        if who in base["cpu"]:
            row(
                f"  CPU seconds meanwhile: {label}",
                f"{base['cpu'][who]:.1f}",
                f"{mine['cpu'][who]:.1f}",
                f"{mine['cpu'][who] / max(base['cpu'][who], 0.01):.2f}",
            )
    row(f"tag moved -> {users} Deployments patched (s)", "", f"{mine['move']:.2f}")
    row("  the first of them patched (s)", "", f"{mine['move_first']:.2f}")
    row(f"operator peak RSS (MB), {n} environments", f"{base['peak']:.0f}", f"{mine['peak']:.0f}")
    row(f"warm start: each of {n} reconciled once (s)", "", f"{mine['warm']:.1f}")
    row("  operator peak RSS since the warm start (MB)", "", f"{mine['warm_peak']:.0f}")
    row(f"writes over 3 resyncs ({args.resync:.0f} s apart)", "", f"{mine['idle_writes']}")
    if args.unrelated:
        row(
            f"RSS before / after {args.unrelated} unrelated (MB)",
            f"{base['rss_before']:.0f} / {base['rss_after']:.0f}",
            f"{mine['rss_before']:.0f} / {mine['rss_after']:.0f}",
            f"x{mine['rss_after'] / mine['rss_before']:.2f}",
        )
    envs, tags = mine["cold_reconciles"]
    print(f"botenv reconciles in the cold start: {envs / n:.2f} per environment, {tags} of tags")
    print(f"botenv API calls per environment, cold start: {per_environment(mine['cold_calls'], n)}")
    print(f"botenv API calls per moved environment: {per_environment(mine['move_calls'], users)}")
    print(f"botenv API calls per environment, warm start: {per_environment(mine['warm_calls'], n)}")
    print(
        "(cold start times include polling every 0.25 s, the tag move is watched; targets: "
        "cold start <= 3x the bare operator, tag move <= 0.5 s, peak RSS <= 120 MB, 0 idle "
        "writes, RSS x1.00)"
    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:  # also on a timeout or Ctrl-C: never leave an operator running
        for running in RUNNING:
            stop(running)
