"""Real service peers for the end-to-end tests, each a private server on 127.0.0.1.

- PostgresServer: PostgreSQL (Debian's postgresql, 15 here), password login on TCP.
- RedisServer: Redis 7 (Debian's redis-server), with requirepass.
- RabbitMQServer: RabbitMQ 3.10 (Debian's rabbitmq-server) with its own epmd.

scripts/install-peers.sh installs the Debian packages (``ensure_installed()`` runs it once
per process). Every server picks free loopback ports at construction, keeps its data and
logs under the given workdir, and supports ``stop()`` and ``start()`` again on the same
ports and data (a peer that goes away and comes back). Each runs in its own process group,
stopped as a whole (a graceful signal to the server first, then SIGTERM and SIGKILL to the
group), and dies with the test process (PR_SET_PDEATHSIG), so none outlives a crashed run.
Errors quote the tail of the server's log.

Clients: ``PostgresServer.query`` (the ``psql`` CLI), ``RedisServer.command``/``keys``/``get``
(a small RESP client over a socket), ``RabbitMQServer.messages``/``publish`` (pika).
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import io
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from botenv.local.processes import (
    HOST,
    ManagedProcess,
    free_ports,
    port_open,
    stop_group,
    tail,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-peers.sh"
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


class PeerError(RuntimeError):
    """A peer could not be installed, started or reached."""


# -- installing -----------------------------------------------------------------------

ALL_PACKAGES = ("postgresql", "prometheus", "rabbitmq-server", "redis-server")  # sorted
# packages -> True once installed, or the error of the failed attempt
_install_results: dict[tuple[str, ...], PeerError | bool] = {}
_install_lock = threading.Lock()


def ensure_installed(*packages: str) -> None:
    """Run scripts/install-peers.sh for the Debian packages given (default: all four) once
    per process; it returns at once when they are there, and prints numbered steps to
    stderr when it installs. A failure is remembered and raised again, not retried."""
    key = tuple(sorted(packages or ALL_PACKAGES))
    with _install_lock:
        if _install_results.get(ALL_PACKAGES) is True:
            return
        result = _install_results.get(key)
        if isinstance(result, PeerError):
            raise result
        if result:
            return
        try:
            err_fd = sys.stderr.fileno()
        except (AttributeError, ValueError, io.UnsupportedOperation):
            err_fd = 2
        rc = subprocess.call(
            ["bash", str(INSTALL_SCRIPT), *key],
            stdin=subprocess.DEVNULL,
            stdout=err_fd,
            stderr=err_fd,
        )
        if rc != 0:
            error = PeerError(
                f"{INSTALL_SCRIPT.relative_to(REPO_ROOT)} {' '.join(key)} failed (exit {rc}); "
                "see its output above (or run it by hand)"
            )
            _install_results[key] = error
            raise error
        _install_results[key] = True


# -- processes ------------------------------------------------------------------------


def _clean_env(drop_prefixes: Sequence[str] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}
    env.setdefault("LANG", "C.UTF-8")
    return env


_ADDRESS_IN_USE = re.compile(r"address already in use|eaddrinuse", re.I)


class _PortTaken(PeerError):
    """Another process took one of our ports between picking and binding it."""


class PeerServer(ManagedProcess):
    """One server process (plus helpers) with start()/stop() on ports fixed at construction.

    Subclasses give argv()/env(), ready(), and may prepare files before a start
    (prepare(), first start only) and provision after it (provision(), first start only).
    """

    name = "peer"
    error = PeerError
    package = ""  # the Debian package scripts/install-peers.sh installs for it
    start_timeout = 60.0
    stop_timeout = 15.0
    port_count = 1

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self._fixed_port = port is not None
        self._pick_ports(port)
        super().__init__(Path(workdir).resolve(), self.port)
        self._prepared = False
        self._provisioned = False
        self._started_once = False
        self.started_in: float | None = None  # seconds the last start() took
        atexit.register(self.close)

    # -- hooks -------------------------------------------------------------------------

    def _pick_ports(self, port: int | None) -> None:
        ports = free_ports(self.port_count)
        self.port = port or ports[0]
        self._extra_ports = ports[1:]

    def prepare(self) -> None:
        """Create files before the first start (data dirs, config)."""

    def provision(self) -> None:
        """Create users/databases once, after the first start."""

    def before_start(self) -> None:
        """Start helper processes (each start)."""

    def after_stop(self) -> None:
        """Stop helper processes (each stop)."""

    def exited_error(self, code: int) -> Exception:
        tails = self.log_tails()
        if _ADDRESS_IN_USE.search(tails):
            return _PortTaken(
                f"{self.name} could not listen on port {self.port} (or a helper "
                f"port): taken by another process; {tails}"
            )
        return super().exited_error(code)

    # -- public API --------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server (if it is not running) and wait until it is ready."""
        if self.running:
            return self
        ensure_installed(*[self.package] if self.package else [])
        for attempt in range(3):
            try:
                self._start_once()
                return self
            except _PortTaken:
                # Only a first start may move: a restart must keep its ports.
                if self._fixed_port or self._started_once or attempt == 2:
                    raise
                self._pick_ports(None)
                self._prepared = False
        return self  # not reached

    def stop(self) -> None:
        """Stop the server (graceful signal, then SIGTERM/SIGKILL to its group); keeps its
        data for a start() again. Idempotent."""
        super().stop()
        self.after_stop()

    def close(self) -> None:
        """Stop and remove what lives outside workdir (atexit, context exit)."""
        self.stop()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _start_once(self) -> None:
        began = time.monotonic()
        if not self._prepared:
            self.prepare()
            self._prepared = True
        self.before_start()
        try:
            self.launch()
            self.wait_ready(began)
            if not self._provisioned:
                self.provision()
                self._provisioned = True
        except BaseException:
            self.stop()
            raise
        self._started_once = True
        self.started_in = time.monotonic() - began


# -- PostgreSQL -----------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The directory holding PostgreSQL's server binaries (postgres, initdb).

    $BOTENV_PG_BIN if set; else the directory that PATH's pg_ctl or postgres really lives
    in (Debian links /usr/local/bin/pg_ctl to /usr/lib/postgresql/N/bin); else the newest
    /usr/lib/postgresql/N/bin.
    """

    def complete(d: Path) -> bool:
        return all(os.access(d / b, os.X_OK) for b in ("postgres", "initdb"))

    own = os.environ.get("BOTENV_PG_BIN")
    if own:
        d = Path(own).expanduser()
        if not complete(d):
            raise PeerError(f"BOTENV_PG_BIN={d} lacks executable postgres and initdb")
        return d
    for tool in ("pg_ctl", "postgres", "initdb"):
        found = shutil.which(tool)
        if found and complete(Path(found).resolve().parent):
            return Path(found).resolve().parent
    versions = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if d.parent.name.isdigit() and complete(d):
            versions.append((int(d.parent.name), d))
    if versions:
        return max(versions)[1]
    raise PeerError("no PostgreSQL server binaries found; run scripts/install-peers.sh")


def _psql_binary(bin_dir: Path) -> str:
    if os.access(bin_dir / "psql", os.X_OK):
        return str(bin_dir / "psql")
    found = shutil.which("psql")
    if not found:
        raise PeerError("psql not found; run scripts/install-peers.sh")
    return found


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _reachable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether a user could traverse every directory down to path (mode bits only)."""
    for d in (path, *path.parents):
        try:
            st = d.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


_PG_TMP_PREFIX = "botenv-postgres-"


def _remove_stale_pg_dirs() -> None:
    """Remove fallback data dirs whose test process died without cleaning up."""
    for d in Path(tempfile.gettempdir()).glob(f"{_PG_TMP_PREFIX}*"):
        try:
            pid = int(d.name[len(_PG_TMP_PREFIX) :].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


# psql's unaligned output: separators and a NULL marker that no test data contains.
_FIELD_SEP = "\x1f"
_RECORD_SEP = "\x1e"
_NULL = "\x01NULL\x01"


class PostgresServer(PeerServer):
    """A private PostgreSQL cluster: ``initdb`` then ``postgres`` itself in the foreground
    (what ``pg_ctl start`` runs, but as our child: its process group, its death with us).

    Authentication: trust on the Unix socket (the superuser ``postgres``, used by
    ``query(..., admin=True)``), scram-sha-256 on TCP. ``user``/``password`` is a login
    role owning database ``database`` and allowed to create databases (Rasa's SQL tracker
    store creates its own when told to).

    Running as root, the server runs as the OS user ``postgres``; when that user cannot
    reach workdir (pytest's temp dirs are private to root) the data directory lives in a
    private dir under the system temp dir instead, linked from workdir/data and removed by
    close().
    """

    name = "postgres"
    package = "postgresql"
    graceful_signal = signal.SIGINT  # "fast" shutdown: end sessions, checkpoint, exit

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        user: str = "rasa",
        password: str | None = None,
        database: str = "rasa",
    ) -> None:
        super().__init__(workdir, port)
        self.user = user
        self.password = password or secrets.token_hex(12)
        self.database = database
        self.admin_user = "postgres"
        self.admin_password = secrets.token_hex(12)
        self._run_as: pwd.struct_passwd | None = None
        self._private_root: Path | None = None
        self.root = self.workdir  # where data/ and run/ live (set by prepare)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def url(self) -> str:
        """A SQLAlchemy/libpq URL for the login role and its database."""
        return f"postgresql://{self.user}:{self.password}@{HOST}:{self.port}/{self.database}"

    def _user_kwargs(self) -> dict[str, Any]:
        if self._run_as is None:
            return {}
        return {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}

    def prepare(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.psql = _psql_binary(self.bin_dir)
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise PeerError(
                    "running as root, PostgreSQL needs the OS user 'postgres' (Debian's "
                    "postgresql package creates it; run scripts/install-peers.sh)"
                ) from None
        if self.datadir.joinpath("PG_VERSION").exists():
            return  # initialised by an earlier start of this object
        uid = self._run_as.pw_uid if self._run_as else os.geteuid()
        if self._run_as is not None:
            name = self._run_as.pw_name
            gids = {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
            gids.add(self._run_as.pw_gid)
        else:
            gids = {os.getegid(), *os.getgroups()}
        # Unix socket paths are limited to 107 bytes.
        socket_path_len = len(str(self.workdir / "postgres" / "run" / ".s.PGSQL.65535"))
        if _reachable_by(self.workdir, uid, gids) and socket_path_len < 100:
            self.root = self.workdir / "postgres"
            self.root.mkdir(exist_ok=True)
        else:
            _remove_stale_pg_dirs()
            self.root = Path(tempfile.mkdtemp(prefix=f"{_PG_TMP_PREFIX}{os.getpid()}-"))
            self._private_root = self.root
            link = self.workdir / "data"
            with contextlib.suppress(OSError):
                link.symlink_to(self.root, target_is_directory=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.root / "superuser-password"
        pwfile.write_text(self.admin_password + "\n")
        if self._run_as is not None:
            for p in (self.root, self.socket_dir, pwfile):
                os.chown(p, self._run_as.pw_uid, self._run_as.pw_gid)
        os.chmod(self.root, 0o700)
        began = time.monotonic()
        run = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.datadir), "-U", self.admin_user,
             "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd=self.root,
            env=self._env(),
            timeout=120,
            **self._user_kwargs(),
        )  # fmt: skip
        pwfile.unlink()
        with self.log_path.open("ab") as log:
            log.write(b"--- initdb\n" + run.stdout + run.stderr)
        if run.returncode != 0:
            raise PeerError(
                f"initdb failed (exit {run.returncode}) in {time.monotonic() - began:.1f} s; "
                f"{self.log_tails()}"
            )

    def _env(self) -> dict[str, str]:
        """The environment of initdb and the server."""
        env = _clean_env(drop_prefixes=("PG",))
        if self._run_as is not None:
            env.update(HOME=self._run_as.pw_dir, USER="postgres", LOGNAME="postgres")
        return env

    def env(self) -> Mapping[str, str]:
        return self._env()

    def argv(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"),
            "-D", str(self.datadir),
            "-c", f"listen_addresses={HOST}",
            "-p", str(self.port),
            "-k", str(self.socket_dir),
            # Test data: a clean stop (stop()) writes everything; skip the fsyncs.
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "synchronous_commit=off",
            "-c", "log_min_messages=warning",
        ]  # fmt: skip

    def popen_kwargs(self) -> dict[str, Any]:
        kwargs = self._user_kwargs()
        if kwargs:
            kwargs["cwd"] = self.root  # our workdir may be closed to user postgres
        return kwargs

    def ready(self) -> bool:
        # postmaster.pid's 8th line is the server's state, "ready" once it accepts
        # connections (what pg_ctl -w waits for).
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and port_open(self.port)

    def provision(self) -> None:
        if self.query(
            f"SELECT 1 FROM pg_roles WHERE rolname = {_sql_literal(self.user)}", admin=True
        ):
            return
        self.query(
            f"CREATE ROLE {_sql_ident(self.user)} LOGIN CREATEDB "
            f"PASSWORD {_sql_literal(self.password)}",
            admin=True,
        )
        self.query(
            f"CREATE DATABASE {_sql_ident(self.database)} OWNER {_sql_ident(self.user)}", admin=True
        )

    def query(
        self,
        sql: str,
        *,
        database: str | None = None,
        admin: bool = False,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> list[tuple[str | None, ...]]:
        """Run one SQL statement with psql; its rows as tuples of strings (None for NULL).

        By default as the login role over TCP with its password (scram-sha-256);
        admin=True as the superuser over the Unix socket. user/password override the TCP
        login (to check that a wrong one is refused: PeerError).
        """
        env = _clean_env(drop_prefixes=("PG",))
        if admin:
            argv = ["-h", str(self.socket_dir), "-U", self.admin_user,
                    "-d", database or "postgres"]  # fmt: skip
        else:
            argv = ["-h", HOST, "-U", user or self.user, "-d", database or self.database]
            env["PGPASSWORD"] = self.password if password is None else password
        env["PGCONNECT_TIMEOUT"] = "5"
        run = subprocess.run(
            [self.psql, "-X", "-q", "-A", "-t", "-F", _FIELD_SEP, "-R", _RECORD_SEP,
             "-v", "ON_ERROR_STOP=1",
             "-P", f"null={_NULL}", "-p", str(self.port), *argv, "-c", sql],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=timeout,
        )  # fmt: skip
        if run.returncode != 0:
            raise PeerError(
                f"psql failed (exit {run.returncode}) for {sql!r}: "
                f"{run.stderr.decode(errors='replace').strip()}"
            )
        out = run.stdout.decode()
        if not out:  # no rows (a row of one empty string prints as "\n")
            return []
        return [
            tuple(None if f == _NULL else f for f in record.split(_FIELD_SEP))
            for record in out.removesuffix("\n").split(_RECORD_SEP)
        ]

    def close(self) -> None:
        super().close()
        if self._private_root is not None:
            shutil.rmtree(self._private_root, ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.workdir / "data").unlink()
            self._private_root = None
            self._prepared = False
            self._provisioned = False
            self.root = self.workdir


# -- Redis ----------------------------------------------------------------------------


class RedisReplyError(PeerError):
    """Redis answered a command with an error (-ERR, -NOAUTH, -WRONGPASS...)."""


class RespClient:
    """A minimal RESP2 client (enough for tests: commands in, replies out)."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._file = self._sock.makefile("rb")

    def call(self, *args: str | bytes | int) -> Any:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        self._sock.sendall(payload)
        return self._read()

    def _read(self) -> Any:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            if len(data) != size + 2:
                raise ConnectionError("redis closed the connection")
            return data[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise PeerError(f"unexpected reply from redis: {line!r}")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisServer(PeerServer):
    """A private redis-server, without persistence (``--save '' --appendonly no``: a
    restart starts empty). With a password (the default) clients must AUTH."""

    name = "redis"
    package = "redis-server"
    start_timeout = 20.0

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        password: str | None = None,
        require_password: bool = True,
    ) -> None:
        super().__init__(workdir, port)
        self.user = "default"
        self.password = (password or secrets.token_hex(12)) if require_password else None
        self.config_path = self.workdir / "redis.conf"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    def prepare(self) -> None:
        data = self.workdir / "redis-data"
        data.mkdir(exist_ok=True)
        lines = [
            f"bind {HOST}",
            f"port {self.port}",
            'save ""',
            "appendonly no",
            f'dir "{data}"',
            "daemonize no",
            'logfile ""',
            "protected-mode yes",
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config_path.chmod(0o600)

    def argv(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise PeerError("redis-server not found; run scripts/install-peers.sh")
        return [binary, str(self.config_path)]

    def ready(self) -> bool:
        try:
            with self.client(timeout=1.0) as c:
                return c.call("PING") == "PONG"
        except (OSError, PeerError):
            return False

    def client(
        self, password: str | None = None, *, auth: bool = True, timeout: float = 5.0
    ) -> RespClient:
        """A connected client, authenticated with password (default: the server's)."""
        c = RespClient(HOST, self.port, timeout)
        try:
            if auth and (password or self.password):
                c.call("AUTH", password or self.password or "")
        except BaseException:
            c.close()
            raise
        return c

    def command(self, *args: str | bytes | int) -> Any:
        with self.client() as c:
            return c.call(*args)

    def keys(self, pattern: str = "*") -> list[str]:
        return sorted(k.decode() for k in self.command("KEYS", pattern))

    def get(self, key: str) -> bytes | None:
        return self.command("GET", key)


# -- RabbitMQ -------------------------------------------------------------------------


@dataclass(frozen=True)
class AmqpMessage:
    body: bytes
    app_id: str | None
    routing_key: str
    exchange: str
    properties: Any  # pika.BasicProperties


class RabbitMQServer(PeerServer):
    """A private RabbitMQ node with its own epmd, all on loopback ports picked here.

    The node name, ports and Mnesia directory stay the same across stop()/start(), so
    durable queues and persistent messages survive a restart. No plugins are enabled. The
    user ``user``/``password`` is created on first boot (``default_user``), administrator
    of vhost ``/``; there is no guest user.
    """

    name = "rabbitmq"
    package = "rabbitmq-server"
    start_timeout = 90.0
    stop_timeout = 30.0
    port_count = 3  # AMQP, Erlang distribution, epmd

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        user: str = "rasa",
        password: str | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.user = user
        self.password = password or secrets.token_hex(12)
        self.vhost = "/"
        self.node = f"botenv-{secrets.token_hex(4)}@localhost"
        self._epmd: subprocess.Popen[bytes] | None = None
        self._server_log_offset = 0
        self.epmd_log_path = self.workdir / "epmd.log"

    def _pick_ports(self, port: int | None) -> None:
        super()._pick_ports(port)
        self.dist_port, self.epmd_port = self._extra_ports

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@{HOST}:{self.port}/%2F"

    @property
    def server_log_path(self) -> Path:
        return self.workdir / "log" / f"{self.node}.log"

    def log_tails(self) -> str:
        # The node's own log of this start: its first errors (the cause; the end of the
        # log is the shutdown that followed) and its last lines.
        try:
            with self.server_log_path.open("rb") as f:
                f.seek(self._server_log_offset)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            lines = []
        errors = [line for line in lines if "[error]" in line or "[critical]" in line]
        first_errors = "\n".join(errors[:12])
        last = "\n".join(lines[-12:])
        return (
            f"last lines of {self.log_path}:\n{tail(self.log_path, 8)}\n"
            f"first errors in {self.server_log_path}:\n{first_errors}\n"
            f"last lines of it:\n{last}"
        )

    def prepare(self) -> None:
        for d in ("home", "mnesia", "log"):
            (self.workdir / d).mkdir(exist_ok=True)
        (self.workdir / "rabbitmq-env.conf").write_text("# botenv: no system settings\n")
        (self.workdir / "enabled_plugins").write_text("[].\n")
        conf = self.workdir / "rabbitmq.conf"
        conf.write_text(
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            "default_vhost = /\n"
            "default_permissions.configure = .*\n"
            "default_permissions.read = .*\n"
            "default_permissions.write = .*\n"
            "default_user_tags.administrator = true\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )
        conf.chmod(0o600)

    def env(self) -> dict[str, str]:
        w = self.workdir
        loopback_dist = "-kernel inet_dist_use_interface {127,0,0,1}"
        env = _clean_env(drop_prefixes=("RABBITMQ_", "ERL_"))
        env.update(
            HOME=str(w / "home"),  # the Erlang cookie: private to this node and its CLI
            RABBITMQ_CONF_ENV_FILE=str(w / "rabbitmq-env.conf"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS=HOST,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(w / "mnesia"),
            RABBITMQ_LOG_BASE=str(w / "log"),
            RABBITMQ_CONFIG_FILE=str(w / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(w / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(w / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(w / "rabbitmq.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=loopback_dist,
            # The CLI's own distribution listener: any free loopback port (the default is
            # a fixed range shared by every rabbitmqctl on the machine).
            RABBITMQ_CTL_DIST_PORT_MIN="0",
            RABBITMQ_CTL_DIST_PORT_MAX="0",
            RABBITMQ_CTL_ERL_ARGS=loopback_dist,
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS=HOST,
        )
        return env

    def argv(self) -> list[str]:
        return [str(RABBITMQ_BIN / "rabbitmq-server")]

    def before_start(self) -> None:
        try:
            self._server_log_offset = self.server_log_path.stat().st_size
        except OSError:
            self._server_log_offset = 0
        # A private epmd: Erlang would otherwise start (or reuse) a machine-wide daemon.
        if self._epmd is not None and self._epmd.poll() is None:
            return
        epmd = shutil.which("epmd")
        if epmd is None:
            raise PeerError("epmd not found; run scripts/install-peers.sh")
        self._epmd = self.spawn(
            [epmd, "-address", HOST, "-port", str(self.epmd_port)], self.epmd_log_path,
            self.env(),
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not port_open(self.epmd_port):
            if self._epmd.poll() is not None:
                code = self._epmd.returncode
                self._epmd = None
                last = tail(self.epmd_log_path)
                error = _PortTaken if _ADDRESS_IN_USE.search(last) else PeerError
                raise error(
                    f"epmd exited with code {code} on port {self.epmd_port}; last "
                    f"lines of {self.epmd_log_path}:\n{last}"
                )
            if time.monotonic() > deadline:
                raise PeerError(
                    f"epmd not listening on {self.epmd_port} after 10 s; last "
                    f"lines of {self.epmd_log_path}:\n{tail(self.epmd_log_path)}"
                )
            time.sleep(0.05)

    def after_stop(self) -> None:
        epmd, self._epmd = self._epmd, None
        if epmd is not None:
            stop_group(epmd, 5.0, graceful_signal=signal.SIGTERM, graceful_timeout=5.0)

    def ready(self) -> bool:
        # The AMQP listener opens at the end of the boot; then the CLI confirms it.
        if not _amqp_answers(self.port):
            return False
        self.rabbitmqctl("await_startup", "--timeout", "30")
        return True

    def rabbitmqctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run rabbitmqctl against this node; its stdout (PeerError on failure)."""
        run = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=self.env(),
            cwd=self.workdir,
            timeout=timeout,
        )
        if run.returncode != 0:
            raise PeerError(
                f"rabbitmqctl {' '.join(args)} failed (exit {run.returncode}): "
                f"{(run.stdout + run.stderr).decode(errors='replace').strip()}"
            )
        return run.stdout.decode(errors="replace")

    # -- AMQP client (pika) -------------------------------------------------------------

    @contextlib.contextmanager
    def channel(self, *, user: str | None = None, password: str | None = None) -> Iterator[Any]:
        """A pika channel on a fresh blocking connection (closed on exit)."""
        import pika  # a test extra; not needed to import this module

        params = pika.ConnectionParameters(
            host=HOST,
            port=self.port,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials(user or self.user, password or self.password),
            connection_attempts=1,
            socket_timeout=5,
            blocked_connection_timeout=10,
        )
        connection = pika.BlockingConnection(params)
        try:
            yield connection.channel()
        finally:
            if connection.is_open:
                connection.close()

    def declare_queue(self, queue: str, *, durable: bool = True) -> None:
        with self.channel() as ch:
            ch.queue_declare(queue=queue, durable=durable)

    def publish(
        self,
        queue: str,
        body: bytes | str,
        *,
        app_id: str | None = None,
        persistent: bool = True,
    ) -> None:
        """Publish to queue through the default exchange, with publisher confirms."""
        import pika

        with self.channel() as ch:
            ch.confirm_delivery()
            ch.basic_publish(
                exchange="",
                routing_key=queue,
                body=body.encode() if isinstance(body, str) else body,
                properties=pika.BasicProperties(
                    app_id=app_id, delivery_mode=2 if persistent else 1
                ),
                mandatory=True,
            )

    def message_count(self, queue: str) -> int:
        with self.channel() as ch:
            return ch.queue_declare(queue=queue, passive=True).method.message_count

    def messages(self, queue: str, *, remove: bool = False) -> list[AmqpMessage]:
        """Every message in queue, oldest first, with its app_id. They stay in the queue
        (requeued in their order when the connection closes) unless remove=True."""
        got: list[AmqpMessage] = []
        with self.channel() as ch:
            while True:
                method, properties, body = ch.basic_get(queue=queue, auto_ack=remove)
                if method is None:
                    break
                got.append(
                    AmqpMessage(
                        body, properties.app_id, method.routing_key, method.exchange, properties
                    )
                )
        return got


def _amqp_answers(port: int) -> bool:
    """Whether an AMQP 0-9-1 server answers the protocol header with a method frame."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            return s.recv(1)[:1] == b"\x01"  # frame type 1: Connection.Start
    except OSError:
        return False
