"""What several `botenv` commands share: the exit codes, the connection and API error
handling of the people's commands (status, promote, rollback, history, train), and, for the
steps that run inside a training Job (upload, fetch-project), reading a mounted Secret
volume and printing errors with its values redacted."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from botenv import API_VERSION

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_FORBIDDEN, EXIT_UNREACHABLE = range(6)

# The field manager of every write the people's commands make.
CLI_FIELD_MANAGER = "botenv-cli"

PLURALS = {
    "ModelTag": "modeltags.botenv.dev",
    "BotEnvironment": "botenvironments.botenv.dev",
    "ModelTraining": "modeltrainings.botenv.dev",
}


# --- the people's commands: the API server ----------------------------------------------------


class CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def api_call(
    verb: str, kind: str, namespace: str, name: str = "", *, server: str = ""
) -> Iterator[None]:
    """Turn an API failure into a CliError that names the verb and the object."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    resource = PLURALS.get(kind, kind)
    scope = f"in namespace '{namespace}'" if namespace else "in any namespace"
    what = f"{kind.lower()} '{name}' {scope}" if name else f"{resource} {scope}"
    try:
        yield
    except ApiException as exc:
        detail = _server_message(exc)
        if exc.status == 404:
            if name and _names_object(exc):
                raise CliError(
                    EXIT_NOT_FOUND, f"{kind.lower()} '{name}' not found {scope}"
                ) from None
            raise CliError(
                EXIT_NOT_FOUND,
                f"the botenv CRDs are not installed in this cluster: {resource} does not exist",
            ) from None
        if exc.status == 403:
            detail = detail.partition(" is forbidden: ")[2] or detail
            raise CliError(
                EXIT_FORBIDDEN,
                f"forbidden: cannot {verb} {resource}"
                f"{f' {name!r}' if name else ''} {scope}: "
                f"{detail}",
            ) from None
        if exc.status == 401:
            raise CliError(
                EXIT_FORBIDDEN,
                f"unauthorized: the cluster rejected the "
                f"credentials (while trying to {verb} {resource}): "
                f"{detail}",
            ) from None
        raise CliError(
            EXIT_FAILED, f"cannot {verb} {what}: {exc.status} {exc.reason}: {detail}"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        at = f" at {server}" if server else ""
        raise CliError(EXIT_UNREACHABLE, f"cannot reach the cluster{at}: {reason}") from None


def _status_body(exc: Exception) -> dict:
    try:
        body = json.loads(getattr(exc, "body", "") or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _server_message(exc: Exception) -> str:
    return _status_body(exc).get("message") or str(getattr(exc, "body", "") or "").strip()


def _names_object(exc: Exception) -> bool:
    """A 404 Status about an object (details.name set), not a path the server lacks."""
    return bool((_status_body(exc).get("details") or {}).get("name"))


class Session:
    """A person's connection: the client and the namespace the commands act in."""

    def __init__(self, args: argparse.Namespace) -> None:
        from botenv.kube.client import NoKubeconfig, connect

        try:
            self.kube, default_namespace = connect(args.kubeconfig or "", args.context or "")
        except NoKubeconfig as exc:
            raise CliError(EXIT_UNREACHABLE, str(exc)) from None
        self.all_namespaces = bool(getattr(args, "all_namespaces", False))
        self.namespace = args.namespace or default_namespace
        self.server = self.kube.api.configuration.host

    def tag(self, name: str) -> dict:
        with api_call("get", "ModelTag", self.namespace, name, server=self.server):
            return self.kube.get_object(API_VERSION, "ModelTag", self.namespace, name)

    def environment(self, name: str) -> dict | None:
        """The BotEnvironment, or None when it does not exist."""
        with api_call("get", "BotEnvironment", self.namespace, name, server=self.server):
            return self.kube.get(API_VERSION, "BotEnvironment", self.namespace, name)

    def list(self, kind: str) -> list[dict]:
        namespace = "" if self.all_namespaces else self.namespace
        with api_call("list", kind, namespace, server=self.server):
            items = self.kube.list_objects(API_VERSION, kind, namespace)
        return sorted(
            items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
        )

    def set_model(
        self, name: str, model: str, *, dry_run: bool, action_server_image: str | None = None
    ) -> dict:
        """Move the tag; with `action_server_image`, its actions in the same patch ("" unsets
        it), so model and actions never move apart."""
        spec: dict = {"model": model}
        if action_server_image is not None:
            spec["actionServerImage"] = action_server_image or None
        with api_call("patch", "ModelTag", self.namespace, name, server=self.server):
            return self.kube.merge_patch(
                API_VERSION,
                "ModelTag",
                self.namespace,
                name,
                {"spec": spec},
                field_manager=CLI_FIELD_MANAGER,
                dry_run=dry_run,
            )


# --- the training Job's steps: a mounted Secret, and errors without its values -----------


class StepError(Exception):
    """A failure of a Job step to report as `error: ...` with exit code 1."""


# Not secret, and part of every message about the store (its endpoint URL).
PUBLIC_KEYS = frozenset({"AZURE_ACCOUNT_NAME"})


def step_progress(step: str, line: str) -> None:
    """A progress line of a Job step on stderr, e.g. `botenv upload: ...`."""
    print(f"botenv {step}: {line}", file=sys.stderr, flush=True)


def read_secret_dir(secret_dir: str) -> dict[str, str]:
    """The credentials in a mounted Secret volume, as the model server decodes a Secret; an
    absent directory means none."""
    if not os.path.isdir(secret_dir):
        # A Job renders the flag whether or not a Secret is mounted there: no Secret, no
        # credentials (the backend's default chain), as without --secret-dir.
        step_progress(
            "upload", f"no Secret at --secret-dir {secret_dir}: no credentials from a Secret"
        )
        return {}
    credentials: dict[str, str] = {}
    for name in sorted(os.listdir(secret_dir)):
        path = os.path.join(secret_dir, name)
        # A Secret volume's keys are symlinks into ..data/; skip its own dot-entries.
        if name.startswith(".") or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise StepError(
                f"--secret-dir: cannot read key {name!r} ({exc.strerror or type(exc).__name__})"
            ) from None
        try:
            credentials[name] = raw.decode()
        except UnicodeDecodeError:
            step_progress("upload", f"skipping Secret key {name!r}: not UTF-8 text")
    return credentials


def print_error(message: str, credentials: Mapping[str, str]) -> None:
    """`error: message` on stderr, with every credential value in it replaced by ***."""
    # Backends name keys, never values; this is the belt to those braces.
    for name, value in credentials.items():
        if name in PUBLIC_KEYS:
            continue
        for part in {value, value.strip()}:
            if len(part) >= 4:
                message = message.replace(part, "***")
    print(f"error: {message}", file=sys.stderr, flush=True)
