"""`botenv chat ENV`: talk to an environment's Rasa through its REST channel.

The message goes to the environment's Service through the API server's proxy (what works
from a workstation with a kubeconfig alone), else straight to a Ready Rasa pod's IP when
that is reachable from here (inside the cluster, or on botenv's local node, whose pods'
addresses are this machine's). `--url` names the server instead.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from botenv import API_VERSION
from botenv.cli.shared import EXIT_FAILED, EXIT_OK, CliError, Session, api_call
from botenv.labels import COMPONENT, COMPONENT_LABEL, ENVIRONMENT_LABEL

REST_WEBHOOK = "webhooks/rest/webhook"
DEFAULT_PORT = 5005


def _post(url: str, payload: dict[str, Any], timeout: float) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


class Channel:
    """The ways to one environment's REST channel, in order; the first that answers is
    kept for the rest of the conversation."""

    def __init__(self, ways: list[tuple[str, Callable[[dict[str, Any]], Any]]]) -> None:
        self.ways = ways
        self.tried: list[str] = []

    @property
    def where(self) -> str:
        return self.ways[0][0] if self.ways else "nowhere"

    def send(self, sender: str, text: str) -> list[dict[str, Any]]:
        payload = {"sender": sender, "message": text}
        while self.ways:
            where, send = self.ways[0]
            try:
                answer = send(payload)
            except Exception as exc:  # noqa: BLE001 - any failure: the next way, report all
                if len(self.ways) == 1 and not self.tried:
                    raise CliError(EXIT_FAILED, f"{where}: {_short(exc)}") from None
                self.tried.append(f"{where}: {_short(exc)}")
                self.ways.pop(0)
                continue
            # It answered: this is the way from now on.
            self.ways = self.ways[:1]
            self.tried = []
            if not isinstance(answer, list):
                raise CliError(EXIT_FAILED, f"{where} answered {answer!r}, not a message list")
            return [m for m in answer if isinstance(m, dict)]
        raise CliError(EXIT_FAILED, "; ".join(self.tried))


def _service(environment: dict[str, Any]) -> tuple[str, int]:
    """The Service's name and port, from status.endpoint (http://NAME.NS.svc:PORT)."""
    endpoint = (environment.get("status") or {}).get("endpoint") or ""
    url = urllib.parse.urlsplit(endpoint)
    name = (url.hostname or "").split(".")[0]
    if not name:
        raise CliError(
            EXIT_FAILED,
            f"botenvironment '{environment['metadata']['name']}' has no status.endpoint yet: "
            "is the botenv operator running? (`botenv status`)",
        )
    return name, url.port or DEFAULT_PORT


def find_channel(session: Session, name: str, timeout: float) -> Channel:
    namespace = session.namespace
    with api_call("get", "BotEnvironment", namespace, name, server=session.server):
        environment = session.kube.get_object(API_VERSION, "BotEnvironment", namespace, name)
    service, port = _service(environment)
    ways: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        (
            f"the API server's proxy to service {service}:{port}",
            lambda payload: session.kube.service_proxy_post(
                namespace, service, port, REST_WEBHOOK, payload
            ),
        )
    ]
    selector = f"{ENVIRONMENT_LABEL}={name},{COMPONENT_LABEL}={COMPONENT}"
    with api_call("list", "Pod", namespace, server=session.server):
        pods = session.kube.list_objects("v1", "Pod", namespace, selector)
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if ip and _ready(pod):
            url = f"http://{_host(ip)}:{port}/{REST_WEBHOOK}"
            ways.append(
                (f"pod {pod['metadata']['name']} at {url}", lambda p, u=url: _post(u, p, timeout))
            )
    if len(ways) == 1:
        ways.append(("a Ready Rasa pod", _no_pod))
    return Channel(ways)


def _no_pod(payload: dict[str, Any]) -> Any:
    raise CliError(EXIT_FAILED, "there is none")


def _ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", "") or exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _show(name: str, messages: list[dict[str, Any]]) -> None:
    if not messages:
        print(f"{name}> (no answer)", flush=True)
    for message in messages:
        text = message.get("text")
        if text is None:  # images, buttons, custom payloads: as Rasa sent them
            text = json.dumps({k: v for k, v in message.items() if k != "recipient_id"})
        print(f"{name}> {text}", flush=True)


def cmd_chat(args: argparse.Namespace) -> int:
    sender = args.sender or f"botenv-chat-{secrets.token_hex(4)}"
    if args.url:
        url = args.url.rstrip("/")
        channel = Channel([(url, lambda p: _post(f"{url}/{REST_WEBHOOK}", p, args.timeout))])
    else:
        channel = find_channel(Session(args), args.environment, args.timeout)

    def say(text: str) -> None:
        try:
            _show(args.environment, channel.send(sender, text))
        except CliError as exc:
            raise CliError(
                exc.code,
                f"cannot reach botenvironment '{args.environment}': {exc}. Is it Ready "
                "(`botenv status`)? Or name its server with --url.",
            ) from None

    if args.message:
        for text in args.message:
            say(text)
        return EXIT_OK
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"talking to {args.environment}; Ctrl-D ends", flush=True)
    while True:
        try:
            text = input("you> " if interactive else "")
        except EOFError:
            return EXIT_OK
        if text.strip():
            say(text)


def add_chat_arguments(chat: argparse.ArgumentParser) -> None:
    chat.add_argument("environment", metavar="ENV", help="the BotEnvironment to talk to")
    chat.add_argument(
        "-m",
        "--message",
        action="append",
        default=[],
        help="say this, print the answers and exit (repeatable); without it, read lines "
        "from standard input until Ctrl-D",
    )
    chat.add_argument(
        "--sender",
        default="",
        help="the conversation's sender id (default: a new one per run)",
    )
    chat.add_argument(
        "--url",
        default="",
        help="the Rasa server's base URL (e.g. http://localhost:5005 after `kubectl "
        "port-forward`); default: found through the cluster",
    )
    chat.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long one answer may take (default 30)",
    )
