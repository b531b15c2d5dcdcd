"""A real Rasa Open Source 3.6.21 server for tests.

Rasa 3.6 needs Python < 3.11, so it lives in its own Python 3.10 venv that botenv's local
node also runs (botenv.local.rasa: built once, about 2-3 minutes and 2.7 GB, cached under
``${BOTENV_CACHE:-~/.cache/botenv}/rasa-3.6.21/venv``):

    python -m tests.support.rasa venv        # build (or find) the venv, print its path
    python -m tests.support.rasa train DIR   # train a project, print the model's path

Then ``write_project`` writes a tiny Rasa project, ``train`` trains it (about 9 s; the
result is cached by a hash of the project files) and ``RasaServer`` runs
``rasa run --enable-api`` on a free 127.0.0.1 port. One server uses about 700 MB of
memory: run them one after another, not side by side.

The Python 3.10 interpreter is $BOTENV_RASA_PYTHON if set, else ``python3.10`` on PATH,
else one of pyenv's 3.10.x versions. Only the standard library is imported here.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from botenv.local.processes import die_with_parent, free_port, stop_group, tail, tail_text
from botenv.local.rasa import (  # noqa: F401  (re-exported for the tests)
    BASE_ENV,
    CONSTRAINTS,
    HARNESS_ID,
    PYTHON_SERIES,
    RASA_VERSION,
    RasaHarnessError,
    _clean_env,
    _say,
    cache_root,
    find_python310,
    rasa_python,
    rasa_venv,
)

# -- projects and models -----------------------------------------------------------------


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def write_project(dir: Path, *, intents: dict[str, list[str]], responses: dict[str, str]) -> Path:
    """Write a tiny Rasa project to dir and return dir.

    intents maps an intent name to example messages; responses maps each intent to the
    text the bot answers it with (response ``utter_<intent>``, one rule per intent). The
    pipeline is WhitespaceTokenizer + KeywordIntentClassifier (an intent matches when a
    message contains one of its examples as words) with MemoizationPolicy + RulePolicy:
    trains in seconds, and two models differ by changing a response text.
    """
    if set(intents) != set(responses):
        raise ValueError(
            f"intents {sorted(intents)} and responses {sorted(responses)} "
            "must name the same intents"
        )
    for name, examples in intents.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or not examples:
            raise ValueError(f"intent {name!r}: needs an identifier name and examples")
    dir = Path(dir)
    (dir / "data").mkdir(parents=True, exist_ok=True)
    (dir / "config.yml").write_text(
        "recipe: default.v1\nlanguage: en\nassistant_id: botenv-test\n"
        "pipeline:\n  - name: WhitespaceTokenizer\n  - name: KeywordIntentClassifier\n"
        "policies:\n  - name: MemoizationPolicy\n  - name: RulePolicy\n"
    )
    domain = ['version: "3.1"', "intents:"]
    domain += [f"  - {name}" for name in intents]
    domain.append("responses:")
    for name in intents:
        domain += [f"  utter_{name}:", f"    - text: {_q(responses[name])}"]
    domain += [
        "session_config:",
        "  session_expiration_time: 60",
        "  carry_over_slots_to_new_session: true",
    ]
    (dir / "domain.yml").write_text("\n".join(domain) + "\n")
    nlu = ['version: "3.1"', "nlu:"]
    for name, examples in intents.items():
        nlu += [f"- intent: {name}", "  examples: |"]
        nlu += [f"    - {' '.join(example.split())}" for example in examples]
    (dir / "data" / "nlu.yml").write_text("\n".join(nlu) + "\n")
    rules = ['version: "3.1"', "rules:"]
    for name in intents:
        rules += [
            f"- rule: answer {name}",
            "  steps:",
            f"  - intent: {name}",
            f"  - action: utter_{name}",
        ]
    (dir / "data" / "rules.yml").write_text("\n".join(rules) + "\n")
    return dir


def _project_files(project: Path) -> list[Path]:
    files = [project / "config.yml"]
    for part in ("domain.yml", "domain", "data"):
        path = project / part
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file())
    return files


def project_hash(project: Path) -> str:
    """A digest of what training reads (config.yml, domain, data/) and of this harness."""
    digest = hashlib.sha256(f"rasa {RASA_VERSION} harness {HARNESS_ID}\n".encode())
    for path in _project_files(Path(project)):
        digest.update(path.relative_to(project).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def train(project: Path, out_dir: Path, fixed_model_name: str, *, timeout: float = 600) -> Path:
    """Train project into out_dir/<fixed_model_name>.tar.gz and return that path.

    Runs ``rasa train --fixed-model-name NAME --out OUT`` with the cached venv. Models are
    cached under the cache dir by project_hash, so an unchanged project is not retrained.
    """
    project = Path(project).resolve()
    if not (project / "config.yml").is_file():
        raise RasaHarnessError(f"{project} is not a Rasa project (no config.yml)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{fixed_model_name}.tar.gz"
    models = cache_root() / "models"
    cached = models / f"{project_hash(project)}.tar.gz"
    if not cached.is_file():
        python = rasa_python()
        models.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rasa-train-") as tmp:
            work = Path(tmp)
            domain = project / "domain.yml"
            cmd = [
                str(python),
                "-m",
                "rasa",
                "train",
                "--fixed-model-name",
                fixed_model_name,
                "--out",
                str(work / "out"),
                "--config",
                str(project / "config.yml"),
                "--domain",
                str(domain if domain.exists() else project / "domain"),
                "--data",
                str(project / "data"),
            ]
            began = time.monotonic()
            try:
                proc = subprocess.run(
                    cmd,
                    cwd=work,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    env=_clean_env({"RASA_CACHE_DIRECTORY": str(work / "cache")}),
                )
            except subprocess.TimeoutExpired as exc:
                raise RasaHarnessError(f"rasa train of {project} took over {timeout} s") from exc
            produced = work / "out" / f"{fixed_model_name}.tar.gz"
            if proc.returncode != 0 or not produced.is_file():
                raise RasaHarnessError(
                    f"rasa train of {project} failed (exit {proc.returncode}):\n"
                    + tail_text(proc.stdout + proc.stderr, 40)
                )
            partial = models / f".{cached.name}.{os.getpid()}"
            shutil.copyfile(produced, partial)
            os.replace(partial, cached)
            _say(f"trained {project.name} in {time.monotonic() - began:.1f} s")
    partial = out_dir / f".{target.name}.{os.getpid()}"
    shutil.copyfile(cached, partial)
    os.replace(partial, target)
    return target


def model_id(model: Path) -> str:
    """The model_id a trained model carries (what GET /status reports for it)."""
    with tarfile.open(model, "r:gz") as archive:
        for member in archive.getmembers():
            if member.name.lstrip("/") == "metadata.json":
                handle = archive.extractfile(member)
                if handle is not None:
                    return json.load(handle)["model_id"]
    raise RasaHarnessError(f"{model} has no metadata.json: not a Rasa 3 model")


# -- the server --------------------------------------------------------------------------


class RasaServer:
    """``rasa run --enable-api`` on a free 127.0.0.1 port, as a child process group.

    model: a model file (``--model``); endpoints: an endpoints.yml (``--endpoints``; a
    ``models:`` section there makes Rasa pull from that URL and ignore ``--model``); env:
    extra environment (e.g. variables endpoints.yml refers to as ``${VAR}``). A
    credentials.yml enabling the REST channel is written unless credentials is given. The
    log (stdout and stderr) goes to ``log_path``; errors quote its tail.
    """

    def __init__(
        self,
        *,
        model: Path | None = None,
        endpoints: Path | None = None,
        credentials: Path | None = None,
        auth_token: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        debug: bool = False,
        port: int | None = None,
    ) -> None:
        self.model = Path(model).resolve() if model else None
        self.endpoints = Path(endpoints).resolve() if endpoints else None
        self.credentials = Path(credentials).resolve() if credentials else None
        self.auth_token = auth_token
        self.args = list(args)
        self.env = dict(env or {})
        self.debug = debug
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rasa-run-"))
        self.log_path = self.workdir / "rasa.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_after: float | None = None  # seconds from start to the first 200 /status
        self._atexit = False

    # -- lifecycle -----------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [
            str(rasa_python()),
            "-m",
            "rasa",
            "run",
            "--enable-api",
            "--interface",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        credentials = self.credentials
        if credentials is None:
            credentials = self.workdir / "credentials.yml"
            credentials.write_text("rest:\n")
        cmd += ["--credentials", str(credentials)]
        if self.endpoints:
            cmd += ["--endpoints", str(self.endpoints)]
        if self.model:
            cmd += ["--model", str(self.model)]
        if self.auth_token:
            cmd += ["--auth-token", self.auth_token]
        if self.debug:
            cmd.append("--debug")
        return cmd + self.args

    def start(self) -> RasaServer:
        if self.proc is not None:
            raise RasaHarnessError("this Rasa server was already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=_clean_env(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        self.started_at = time.monotonic()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Terminate the process group (SIGTERM, then SIGKILL after timeout); idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc, timeout)  # children left in the group (none expected) go too
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RasaServer:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def _fail(self, message: str) -> RasaHarnessError:
        return RasaHarnessError(f"{message}\n--- {self.log_path} (tail) ---\n{self.log_tail()}")

    def rss_bytes(self) -> int:
        """Resident memory of the Rasa process (0 when not running)."""
        if self.proc is None:
            return 0
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    # -- HTTP ----------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: Any = None, timeout: float = 30.0
    ) -> tuple[int, Any]:
        url = self.url + path
        if self.auth_token:
            sep = "&" if "?" in path else "?"
            url += sep + urllib.parse.urlencode({"token": self.auth_token})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self.proc is None:
            raise RasaHarnessError("the Rasa server is not running")
        try:
            status, payload = self._request(method, path, body)
        except OSError as exc:
            raise self._fail(f"{method} {path}: {exc}") from exc
        if status != 200:
            raise self._fail(f"{method} {path} answered {status}: {payload}")
        return payload

    def wait_until_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Poll GET /status until it answers 200 (a model is loaded); return its body."""
        if self.proc is None:
            raise RasaHarnessError("the Rasa server is not running")
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self._fail(f"rasa run exited with {code} before it was ready")
            try:
                status, payload = self._request("GET", "/status", timeout=5)
                if status == 200:
                    if self.ready_after is None:
                        self.ready_after = time.monotonic() - self.started_at
                    return payload
                last = f"/status answered {status}: {payload}"
            except OSError as exc:
                last = f"/status: {exc}"
            if time.monotonic() > deadline:
                raise self._fail(f"Rasa was not ready within {timeout} s ({last})")
            time.sleep(0.25)

    def wait_until_listening(self, timeout: float = 120.0) -> None:
        """Poll GET / until the HTTP server answers at all (also with no model loaded)."""
        if self.proc is None:
            raise RasaHarnessError("the Rasa server is not running")
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self._fail(f"rasa run exited with {code} before it listened")
            try:
                self._request("GET", "/", timeout=5)
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise self._fail(f"Rasa did not listen within {timeout} s ({exc})") from exc
            time.sleep(0.25)

    def get(self, path: str) -> tuple[int, Any]:
        """GET path (with ?token= when auth_token is set): (status code, decoded body)."""
        return self._request("GET", path)

    def status(self) -> dict[str, Any]:
        """GET /status: model_file, model_id, num_active_training_jobs."""
        return self._call("GET", "/status")

    def parse(self, text: str) -> dict[str, Any]:
        """POST /model/parse: the NLU result (intent, entities) for text."""
        return self._call("POST", "/model/parse", {"text": text})

    def send(self, text: str, sender: str = "botenv-test") -> list[dict[str, Any]]:
        """Say text through the REST channel; the bot's messages ({recipient_id, text})."""
        return self._call("POST", "/webhooks/rest/webhook", {"sender": sender, "message": text})

    def reply(self, text: str, sender: str = "botenv-test") -> list[str]:
        """The texts the bot answers text with (REST channel)."""
        return [m.get("text", "") for m in self.send(text, sender)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.rasa",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("venv", help="build (or find) the cached Rasa venv and print its path")
    train_p = sub.add_parser("train", help="train a Rasa project and print the model path")
    train_p.add_argument("project", type=Path)
    train_p.add_argument("--out", type=Path, default=Path("models"))
    train_p.add_argument("--name", default="model")
    ns = parser.parse_args(argv)
    try:
        if ns.cmd == "venv":
            print(rasa_venv())
        else:
            print(train(ns.project, ns.out, ns.name))
    except RasaHarnessError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def greeting_models(root: Path, answers: dict[str, str]) -> dict[str, Path]:
    """One trained model per entry of `answers`, each answering "hello" with its text
    (name -> model file; cached by content like `train`)."""
    return {
        name: train(
            write_project(
                root / name, intents={"greet": ["hello", "hi"]}, responses={"greet": answer}
            ),
            root / "out",
            f"e2e-model-{name}",
        )
        for name, answer in answers.items()
    }
