"""botenv's model server side by side with nginx, serving the same model file on loopback.

    .venv/bin/python bench/model_server.py [--size-mb 200] [--duration 5] [--downloads 8]
                                           [--rounds 3]

Creates a file of random bytes (`--size-mb` MiB) in a temp dir and serves it

- from botenv's model server (tests/modelserver/serve_dir.py: a StaticCatalog over the
  directory, one tag, a pull token; the file is served from the disk cache, which one download
  fills before anything is measured), and
- from nginx (one worker process, `sendfile on`, `etag on`, access log off) at the same path,
  `/models/bots/tags/production`,

then measures, with wrk as the load generator (one wrk thread; `-c` clients):

- revalidations per second: `If-None-Match: <the server's ETag>` answered 304 (botenv's digest
  ETag, nginx's mtime-size ETag), 1 and 8 clients, `--duration` seconds each;
- MB/s of full downloads (read and discarded), 1 and 8 clients, for as long as `--downloads`
  downloads per client take at the warm-up rate (capped at 60 s);
- CPU used by server, client and the rest of the machine during each run, and each server's
  peak RSS (VmHWM, for nginx master + worker).

Every figure is measured `--rounds` times, the servers taking turns going first; the table shows
the best run of each (the least disturbed by other load on the machine, which the "rest of the
machine" rows show), the lines before it every run.

Both servers get the Bearer token header (nginx ignores it). Installs `nginx` and `wrk` with
apt-get when they are not on PATH. Prints figures; asserts nothing. MB = 2**20 bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from botenv.local.processes import free_port, stop_group

REPO = Path(__file__).resolve().parents[1]
NAMESPACE, TAG, MODEL = "bots", "production", "model.tar.gz"
PATH = f"/models/{NAMESPACE}/tags/{TAG}"
TOKEN = "bench-pull-token"
MB = 1 << 20
CLIENTS = (1, 8)
MAX_DOWNLOAD_SECONDS = 60
CLK_TCK = os.sysconf("SC_CLK_TCK")

# wrk's done() hook: exact totals without a per-response Lua callback (which would make wrk
# buffer every 200 MB body in memory).
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d bytes=%d duration_us=%d lat_mean_us=%.1f lat_p50_us=%d lat_p99_us=%d "
    .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\\n",
    summary.requests, summary.bytes, summary.duration, latency.mean,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    etag on;
    keepalive_requests 10000000;
    default_type application/gzip;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = {path} {{
            alias {file};
            add_header filename {model};
        }}
    }}
}}
"""


def say(text: str) -> None:
    print(text, flush=True)


# -- tools ---------------------------------------------------------------------------------


def ensure_tools() -> None:
    """nginx and wrk from Debian, installed when missing."""
    missing = [name for name in ("nginx", "wrk") if shutil.which(name) is None]
    if not missing:
        return
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"installing {', '.join(missing)}: {' '.join(install)}")
    if subprocess.run(install, env=env, timeout=600).returncode != 0:
        say("install failed; running apt-get update first")
        subprocess.run(["apt-get", "update"], env=env, timeout=600, check=True)
        subprocess.run(install, env=env, timeout=600, check=True)
    for name in missing:
        if shutil.which(name) is None:
            raise SystemExit(f"{name} is still not on PATH after installing it")


# -- processes -----------------------------------------------------------------------------


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it does not go within 10 s."""
    if proc.poll() is not None:
        return
    stop_group(proc, timeout=10)


def wait_listening(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {timeout} s")


def start_botenv(
    tmp: Path, models: Path, procs: list[subprocess.Popen]
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    with (tmp / "botenv.log").open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.modelserver.serve_dir",
                str(models),
                MODEL,
                str(tmp / "cache"),
                "--namespace",
                NAMESPACE,
                "--tag",
                TAG,
                "--port",
                str(port),
                "--answer-within",
                "300",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "BOTENV_PULL_TOKEN": TOKEN},
        )
    procs.append(proc)  # stopped by the caller, also if it never listens
    wait_listening(port, proc, "botenv's model server", timeout=120)  # MD5s the file first
    return proc, port


def start_nginx(
    tmp: Path, models: Path, procs: list[subprocess.Popen]
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    prefix = tmp / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(tmp=prefix, port=port, path=PATH, file=models / MODEL, model=MODEL)
    )
    with (prefix / "stderr.log").open("w") as log:
        proc = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    procs.append(proc)
    wait_listening(port, proc, "nginx")
    return proc, port


def process_tree(pid: int) -> list[int]:
    """`pid` and its children (nginx's master and workers)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return 0.0


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, softirq included (loopback TCP work lands there)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


# -- HTTP ----------------------------------------------------------------------------------


def fetch(
    port: int, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, int]:
    """(status, headers, body bytes read and discarded)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, PATH, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
        resp = conn.getresponse()
        size = 0
        while chunk := resp.read(MB):
            size += len(chunk)
        return resp.status, resp.headers, size
    finally:
        conn.close()


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    etag: str = ""
    warm_mb_s: float = 0.0
    hwm_at_start: float = 0.0

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def hwm_mb(self) -> tuple[float, list[float]]:
        each = [vm_hwm_mb(pid) for pid in self.pids()]
        return sum(each), each

    def prepare(self, size: int) -> None:
        """ETag from a HEAD, one full download (fills botenv's cache, warms the page cache),
        and a check that the ETag is answered with a 304."""
        self.hwm_at_start = self.hwm_mb()[0]
        status, headers, _ = fetch(self.port, "HEAD")
        if status != 200 or not headers.get("ETag"):
            raise SystemExit(f"{self.name}: HEAD answered {status}, ETag {headers.get('ETag')}")
        self.etag = headers["ETag"]
        for _ in range(2):  # the first fills botenv's cache; the second is timed
            started = time.monotonic()
            status, headers, got = fetch(self.port)
            elapsed = time.monotonic() - started
            if status != 200 or got != size:
                raise SystemExit(f"{self.name}: warm-up download answered {status}, {got} bytes")
        self.warm_mb_s = size / MB / elapsed
        status, headers, got = fetch(self.port, headers={"If-None-Match": self.etag})
        if status != 304:
            raise SystemExit(f"{self.name}: If-None-Match {self.etag} answered {status}")
        say(
            f"  {self.name:<7} port {self.port}, ETag {self.etag}, filename "
            f"{headers.get('filename')}, second warm-up download {elapsed:.2f} s "
            f"({self.warm_mb_s:,.0f} MB/s through http.client)"
        )


# -- wrk -----------------------------------------------------------------------------------


@dataclass
class Run:
    requests: int
    bytes: int
    seconds: float
    lat_mean_ms: float
    lat_p50_ms: float
    lat_p99_ms: float
    errors: dict[str, int]
    server_cpu: float  # seconds
    client_cpu: float  # seconds
    machine_busy: float  # share of all CPUs busy during the run, 0..1

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mb_s(self) -> float:
        return self.bytes / MB / self.seconds


def wrk(server: Server, script: Path, clients: int, seconds: int, headers: dict[str, str]) -> Run:
    argv = [
        "wrk",
        "-t",
        "1",
        "-c",
        str(clients),
        "-d",
        f"{seconds}s",
        "--timeout",
        f"{max(seconds * 2, 10)}s",
        "-s",
        str(script),
        "-H",
        f"Authorization: Bearer {TOKEN}",
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://127.0.0.1:{server.port}{PATH}")
    pids = server.pids()
    cpu_before = cpu_seconds(pids)
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, total_before = machine_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    busy_after, total_after = machine_cpu()
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = cpu_seconds(pids) - cpu_before
    client_cpu = (
        usage_after.ru_utime + usage_after.ru_stime - usage_before.ru_utime - usage_before.ru_stime
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    values = dict(item.split("=") for item in line.split()[1:])
    return Run(
        requests=int(values["requests"]),
        bytes=int(values["bytes"]),
        seconds=int(values["duration_us"]) / 1e6,
        lat_mean_ms=float(values["lat_mean_us"]) / 1000,
        lat_p50_ms=int(values["lat_p50_us"]) / 1000,
        lat_p99_ms=int(values["lat_p99_us"]) / 1000,
        errors={k[4:]: int(v) for k, v in values.items() if k.startswith("err_") and int(v)},
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
    )


def describe(server: Server, run: Run, what: str) -> None:
    errors = ", ".join(f"{k} {v}" for k, v in run.errors.items()) or "none"
    per_response = run.bytes / run.requests if run.requests else 0
    say(
        f"  {server.name:<7} {what}: {run.requests} responses in {run.seconds:.2f} s, "
        f"{run.rps:,.0f}/s, {run.mb_s:,.0f} MB/s, {per_response:,.0f} B/response, "
        f"latency mean {run.lat_mean_ms:.2f} ms p50 {run.lat_p50_ms:.2f} ms "
        f"p99 {run.lat_p99_ms:.2f} ms; CPU server {run.server_cpu / run.seconds:.0%} "
        f"wrk {run.client_cpu / run.seconds:.0%} rest {other_cpu(run, os.cpu_count() or 1):.0%} "
        f"of a core; errors {errors}"
    )


# -- report --------------------------------------------------------------------------------


def other_cpu(run: Run, cores: int) -> float:
    """CPU used outside server and wrk (other processes, unattributed softirq), in cores."""
    machine = run.machine_busy * cores * run.seconds
    return max(0.0, machine - run.server_cpu - run.client_cpu) / run.seconds


def plural(clients: int) -> str:
    return f"{clients} client{'s' if clients != 1 else ''}"


def row(label: str, botenv: float, nginx: float, fmt: str = "{:,.0f}") -> str:
    ratio = f"{botenv / nginx:.2f}" if nginx else "-"
    return f"{label:<44}{fmt.format(botenv):>12}{fmt.format(nginx):>12}{ratio:>14}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=200, help="model size in MiB")
    parser.add_argument(
        "--duration",
        type=int,
        default=5,
        help="seconds per revalidation run (whole seconds: wrk's -d)",
    )
    parser.add_argument(
        "--downloads",
        type=int,
        default=8,
        help="full downloads per client to size each download run for",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs per figure, servers alternating; the best one is shown",
    )
    args = parser.parse_args()
    # Ctrl-C raises KeyboardInterrupt even where SIGINT came ignored (a background job);
    # SIGTERM exits through the same clean-up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    ensure_tools()
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk_version = (wrk_version.stdout or wrk_version.stderr).split("\n")[0].strip()

    size = args.size_mb * MB
    tmp = Path(tempfile.mkdtemp(prefix="botenv-bench-"))
    servers: list[Server] = []
    procs: list[subprocess.Popen] = []
    try:
        models = tmp / "models"
        models.mkdir()
        say(f"writing {args.size_mb} MB of random bytes")
        with (models / MODEL).open("wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(MB))
        script = tmp / "report.lua"
        script.write_text(WRK_SCRIPT)

        servers.append(Server("botenv", *start_botenv(tmp, models, procs)))
        servers.append(Server("nginx", *start_nginx(tmp, models, procs)))
        say(f"servers ({nginx_version}, 1 worker; load from {wrk_version}, 1 thread):")
        for server in servers:
            server.prepare(size)

        runs: dict[tuple[str, str, int], list[Run]] = {}

        def measure(kind: str, clients: int, seconds: int, round_: int) -> None:
            # Alternating which server goes first spreads drift (and other load) evenly.
            for server in servers if round_ % 2 == 0 else servers[::-1]:
                headers = {"If-None-Match": server.etag} if kind == "304" else {}
                run = wrk(server, script, clients, seconds, headers)
                runs.setdefault((kind, server.name, clients), []).append(run)
                describe(server, run, kind)

        for clients in CLIENTS:
            say(f"304 revalidations, {plural(clients)}, {args.duration} s per run:")
            for round_ in range(args.rounds):
                measure("304", clients, args.duration, round_)
        for clients in CLIENTS:
            # Sized from the slower warm-up rate; both servers get the same duration.
            slowest = min(server.warm_mb_s for server in servers)
            seconds = min(
                MAX_DOWNLOAD_SECONDS,
                max(2, math.ceil(args.downloads * clients * args.size_mb / slowest)),
            )
            say(
                f"full downloads, {plural(clients)}, {seconds} s per run "
                f"(~{args.downloads}+ downloads per client at the warm-up rate):"
            )
            for round_ in range(args.rounds):
                measure("200", clients, seconds, round_)

        def best(kind: str, clients: int) -> tuple[Run, Run]:
            def pick(name: str) -> Run:
                return max(
                    runs[kind, name, clients],
                    key=lambda run: run.rps if kind == "304" else run.mb_s,
                )

            return pick("botenv"), pick("nginx")

        botenv, nginx = servers
        cores = os.cpu_count() or 1
        say("")
        say(
            f"{args.size_mb} MB model on loopback; botenv 1 process, nginx 1 worker; "
            f"wrk 1 thread; {cores} CPUs; best of {args.rounds} run(s) each"
        )
        say(f"{'':<44}{'botenv':>12}{'nginx':>12}{'botenv/nginx':>14}")

        def cpu_rows(b: Run, n: Run) -> None:
            say(
                row(
                    "  server CPU (% of a core)",
                    b.server_cpu / b.seconds * 100,
                    n.server_cpu / n.seconds * 100,
                )
            )
            say(
                row(
                    "  wrk CPU (% of a core)",
                    b.client_cpu / b.seconds * 100,
                    n.client_cpu / n.seconds * 100,
                )
            )
            say(
                row(
                    "  rest of the machine (% of a core)",
                    other_cpu(b, cores) * 100,
                    other_cpu(n, cores) * 100,
                )
            )

        for clients in CLIENTS:
            b, n = best("304", clients)
            say(row(f"304 revalidations/s, {plural(clients)}", b.rps, n.rps))
            say(row("  latency p50 (ms)", b.lat_p50_ms, n.lat_p50_ms, "{:.3f}"))
            say(row("  latency p99 (ms)", b.lat_p99_ms, n.lat_p99_ms, "{:.3f}"))
            say(
                row(
                    "  server CPU per 304 (us)",
                    b.server_cpu / b.requests * 1e6,
                    n.server_cpu / n.requests * 1e6,
                    "{:.1f}",
                )
            )
            cpu_rows(b, n)
        for clients in CLIENTS:
            b, n = best("200", clients)
            say(row(f"download MB/s, {plural(clients)}", b.mb_s, n.mb_s))
            say(
                row(
                    "  complete downloads per client",
                    b.requests / clients,
                    n.requests / clients,
                    "{:.1f}",
                )
            )
            say(row("  latency p50 per download (ms)", b.lat_p50_ms, n.lat_p50_ms))
            cpu_rows(b, n)
        (b_hwm, _), (n_hwm, n_each) = botenv.hwm_mb(), nginx.hwm_mb()
        say(row("peak RSS, VmHWM (MB)", b_hwm, n_hwm, "{:.1f}"))
        say(row("  VmHWM after start-up (MB)", botenv.hwm_at_start, nginx.hwm_at_start, "{:.1f}"))
        say(
            f"  nginx VmHWM per process (master, workers): "
            f"{', '.join(f'{x:.1f}' for x in n_each)} MB"
        )
        return 0
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        return 130
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
