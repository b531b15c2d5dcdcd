"""The readiness script shipped in the ConfigMap when Rasa's API needs auth, run here with
urllib (and PyJWT) replaced by fakes: no network, no Rasa."""

from __future__ import annotations

import io
import json
import sys
import types
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.unit.builders import environment, render_all

TOKEN = "t0k/en &?=+"


class FakeRasa:
    """Answers like Rasa's GET /status: 409 until a model is loaded."""

    def __init__(self, status: int = 200, body: dict | None = None) -> None:
        self.status, self.body = status, body or {}
        self.requests: list[urllib.request.Request] = []

    def urlopen(self, request: urllib.request.Request, timeout: float = 0) -> io.BytesIO:
        self.requests.append(request)
        if self.status != 200:
            raise urllib.error.HTTPError(request.full_url, self.status, "error", {}, None)
        return io.BytesIO(json.dumps(self.body).encode())


def run_probe(rendered, monkeypatch, rasa: FakeRasa, secrets: dict[str, str]) -> int:
    """Run the shipped script with the pod's env: literal values, and fake secret values."""
    for entry in rendered.container["env"]:
        if "value" in entry:
            monkeypatch.setenv(entry["name"], entry["value"])
        elif entry["name"] in secrets:
            monkeypatch.setenv(entry["name"], secrets[entry["name"]])
    monkeypatch.setattr(urllib.request, "urlopen", rasa.urlopen)
    script = rendered.configmap["data"]["readiness.py"]
    with pytest.raises(SystemExit) as exit_:
        exec(compile(script, "readiness.py", "exec"), {"__name__": "__main__"})
    return exit_.value.code


@pytest.fixture
def token_env():
    return render_all(environment(auth={"tokenSecretRef": {"name": "rasa-auth"}}))


def test_ready_when_a_model_is_loaded(token_env, monkeypatch):
    rasa = FakeRasa(200, {"model_file": "m.tar.gz", "model_id": "abc"})
    assert run_probe(token_env, monkeypatch, rasa, {"BOTENV_AUTH_TOKEN": TOKEN}) == 0
    url = urllib.parse.urlsplit(rasa.requests[0].full_url)
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", 5005, "/status")
    assert urllib.parse.parse_qs(url.query) == {"token": [TOKEN]}


def test_not_ready_before_a_model_is_loaded(token_env, monkeypatch):
    rasa = FakeRasa(409)
    assert run_probe(token_env, monkeypatch, rasa, {"BOTENV_AUTH_TOKEN": TOKEN}) == 1


def test_not_ready_on_an_auth_error(token_env, monkeypatch):
    rasa = FakeRasa(401)
    assert run_probe(token_env, monkeypatch, rasa, {"BOTENV_AUTH_TOKEN": TOKEN}) == 1


def test_not_ready_without_a_model_in_the_answer(token_env, monkeypatch):
    rasa = FakeRasa(200, {"model_file": None, "num_active_training_jobs": 0})
    assert run_probe(token_env, monkeypatch, rasa, {"BOTENV_AUTH_TOKEN": TOKEN}) == 1


def test_jwt_only_signs_a_bearer_token_with_the_configured_method(monkeypatch):
    rendered = render_all(
        environment(auth={"jwtSecretRef": {"name": "rasa-auth"}, "jwtMethod": "HS384"})
    )
    calls = []

    def encode(claims: dict, key: str, algorithm: str) -> str:
        calls.append((claims, key, algorithm))
        return "signed.jwt.value"

    monkeypatch.setitem(sys.modules, "jwt", types.SimpleNamespace(encode=encode))
    monkeypatch.delenv("BOTENV_AUTH_TOKEN", raising=False)
    rasa = FakeRasa(200, {"model_file": "m.tar.gz"})
    assert run_probe(rendered, monkeypatch, rasa, {"BOTENV_JWT_SECRET": "jwt-key"}) == 0
    request = rasa.requests[0]
    assert "token=" not in request.full_url
    assert request.get_header("Authorization") == "Bearer signed.jwt.value"
    claims, key, algorithm = calls[0]
    assert key == "jwt-key"
    assert algorithm == "HS384"
    assert claims["user"]["role"] == "admin"
