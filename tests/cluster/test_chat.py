"""`botenv chat ENV` through the real API server's proxy to the environment's Service.

The operator makes the environment's Deployment and Service; its pod is marked Ready with
this machine's own non-loopback address as its IP (the API server refuses to proxy to
loopback), where a small HTTP server answers Rasa's REST webhook on Rasa's port as Rasa
does. The endpoints controller puts that address behind the Service. With real Rasa pods,
tests/e2e/test_demo.py talks to them."""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.cluster.test_cli import botenv, ok
from tests.cluster.test_environments import env, tag
from tests.support.kubectl import eventually
from tests.support.pods import make_ready

pytestmark = pytest.mark.cluster

_names = itertools.count()


def host_address() -> str:
    """This machine's first non-loopback IPv4 address."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    for address in out:
        if "." in address and not address.startswith("127."):
            return address
    raise AssertionError(f"no non-loopback IPv4 address on this machine (hostname -I: {out})")


class RestChannel(BaseHTTPRequestHandler):
    """Rasa's REST channel, as far as botenv chat uses it: echoes each message."""

    heard: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/webhooks/rest/webhook":
            self.send_error(404)
            return
        RestChannel.heard.append(body)
        data = json.dumps(
            [{"recipient_id": body["sender"], "text": f"you said: {body['message']}"}]
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


RASA_PORT = 5005


@pytest.fixture
def rest_server() -> Iterator[str]:
    """The REST channel on this machine's address, Rasa's port; yields the address."""
    address = host_address()
    server = ThreadingHTTPServer((address, RASA_PORT), RestChannel)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RestChannel.heard = []
    yield address
    server.shutdown()
    server.server_close()


def running_environment(kubectl, ns: str, name: str, pod_ip: str) -> None:
    """An environment whose one pod is Ready at pod_ip, behind the operator's Service."""
    kubectl.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        tag(ns, name, "chat-m1.tar.gz"),
        env(ns, name),
    )
    selector = f"botenv.dev/environment={name},app.kubernetes.io/component=rasa-server"
    eventually(
        lambda: make_ready(kubectl, ns, selector, pod_ip=pod_ip) == 1,
        message=f"the pod of {name} Ready at {pod_ip}",
    )
    eventually(
        lambda: (kubectl.get("benv", name, ns).get("status") or {}).get("endpoint"),
        message=f"{name} has status.endpoint",
    )


def test_chat_reaches_the_environment_through_the_api_server_proxy(
    kubectl, operator, control_plane, rest_server
):
    ns = f"chat-{next(_names)}"
    running_environment(kubectl, ns, "production", rest_server)

    def chat() -> subprocess.CompletedProcess[str] | None:
        proc = botenv(
            control_plane.kubeconfig,
            *("chat", "production", "-n", ns, "-m", "hello", "-m", "bye", "--sender", "tester"),
        )
        return proc if proc.returncode == 0 else None

    # The endpoints controller fills the Service's endpoints within a moment.
    out = ok(eventually(chat, message="botenv chat answered through the proxy"))
    assert out.splitlines() == ["production> you said: hello", "production> you said: bye"]
    assert RestChannel.heard[-2:] == [
        {"sender": "tester", "message": "hello"},
        {"sender": "tester", "message": "bye"},
    ]


def test_chat_says_why_it_cannot_reach_an_environment(kubectl, operator, control_plane):
    ns = f"chat-{next(_names)}"
    # Nothing listens at the pod's address: the proxy fails, and so does the pod itself.
    running_environment(kubectl, ns, "staging", host_address())
    proc = botenv(control_plane.kubeconfig, "chat", "staging", "-n", ns, "-m", "hello")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("error: cannot reach botenvironment 'staging':"), err
    assert "the API server's proxy to service rasa-staging:5005" in err
    assert f"at http://{host_address()}:5005/webhooks/rest/webhook" in err
    assert "Is it Ready (`botenv status`)?" in err
    assert "Traceback" not in err

    missing = botenv(control_plane.kubeconfig, "chat", "nothere", "-n", ns, "-m", "hi")
    assert missing.returncode == 3
    assert f"botenvironment 'nothere' not found in namespace '{ns}'" in missing.stderr
