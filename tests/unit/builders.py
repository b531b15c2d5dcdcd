"""Small builders shared by the unit tests: CR bodies and a render of all children.

`render_all` chains the public pure functions the way a reconcile does (parse -> secret uses
-> endpoints -> ConfigMap/Deployment/Service); it adds no logic of its own.
"""

from __future__ import annotations

import copy
import dataclasses

import yaml

from botenv.api import EnvironmentSpec, parse_environment, parse_tag
from botenv.api.environment import check_tag_fits
from botenv.api.tag import StorageSpec
from botenv.render import names
from botenv.render import secretenv as se
from botenv.render.configmap import ENDPOINTS_FILE, configmap
from botenv.render.deployment import ModelRef, deployment, needs_probe_script
from botenv.render.endpoints import endpoints
from botenv.render.service import service

DEFAULT_IMAGE = "rasa/rasa:3.6.21-full"
UID = "0b8f2a43-1111-4c5e-9d3e-6f0a7e2b9c01"
MODEL_SERVER = "http://botenv-model-server.botenv-system.svc:8080"


def environment(
    name: str = "production",
    namespace: str = "bots",
    *,
    uid: str = UID,
    created: str = "2024-01-01T00:00:00Z",
    status: dict | None = None,
    **spec: object,
) -> dict:
    """A BotEnvironment body as the API server hands it to the operator."""
    body: dict = {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "BotEnvironment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "generation": 1,
            "creationTimestamp": created,
        },
        "spec": copy.deepcopy(spec),
    }
    if status is not None:
        body["status"] = status
    return body


def tag(
    name: str = "production",
    namespace: str = "bots",
    *,
    model: str = "20190506-100418.tar.gz",
    **storage: object,
) -> dict:
    """A ModelTag body; `storage` defaults to an S3 bucket."""
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTag",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"model": model, "storage": storage or {"provider": "s3", "bucket": "rasa-models"}},
    }


def storage(**fields: object) -> StorageSpec:
    return parse_tag(tag(**fields)).storage


def spec(**fields: object) -> EnvironmentSpec:
    return parse_environment(environment(**fields), DEFAULT_IMAGE)


@dataclasses.dataclass
class Rendered:
    spec: EnvironmentSpec
    uses: list[se.SecretUse]
    endpoints: dict  # endpoints.yml as Rasa reads it (parsed back from the ConfigMap text)
    configmap: dict
    deployment: dict
    service: dict

    @property
    def container(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]["containers"][0]

    @property
    def pod(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def annotations(self) -> dict:
        return self.deployment["spec"]["template"]["metadata"]["annotations"]

    @property
    def env(self) -> dict[str, dict]:
        return {e["name"]: e for e in self.container["env"]}


def render_all(
    body: dict,
    *,
    model: str = "20190506-100418.tar.gz",
    digest: str = "",
    storage: StorageSpec | None = None,
    present: dict[str, frozenset[str] | None] | None = None,
    queue: str = "",
    config_hash: str = "cfg-hash",
    secrets_hash: str = "sec-hash",
) -> Rendered:
    """Render every child of one environment. `present` maps Secret names to their keys
    (default: every referenced key exists)."""
    parsed = parse_environment(body, DEFAULT_IMAGE)
    check_tag_fits(parsed, storage=storage or StorageSpec(provider="http"), action_server_image="")
    remote = storage if parsed.delivery == "remoteStorage" else None
    uses = se.secret_uses(parsed, remote)
    if present is None:
        present = {}
        for use in uses:
            present[use.secret] = frozenset(present.get(use.secret) or ()) | {use.key}
    # botenv provisions the pull token itself: it exists unless a test says otherwise
    present = {names.pull_token_secret_name(parsed.name): frozenset({se.PULL_TOKEN_KEY}), **present}
    usable = se.usable(uses, present)
    if not queue and parsed.event_broker is not None:
        queue = parsed.event_broker.queue or names.derived_queue(parsed.namespace, parsed.name)
    doc = endpoints(
        parsed,
        model_url=names.model_url(
            MODEL_SERVER, parsed.namespace, parsed.model_tag, pinned=parsed.rollout == "Restart"
        ),
        queue=queue,
        used_vars={u.var for u in usable if u.var},
    )
    uid = body["metadata"]["uid"]
    config = configmap(
        environment=parsed.name,
        namespace=parsed.namespace,
        tag=parsed.model_tag,
        uid=uid,
        endpoints=doc,
        needs_probe_script=needs_probe_script(parsed),
    )
    ref = ModelRef(
        tag=parsed.model_tag,
        model=model,
        digest=digest,
        storage=storage or StorageSpec(provider="http"),
    )
    deploy = deployment(
        parsed, model=ref, uid=uid, uses=usable, config_hash=config_hash, secrets_hash=secrets_hash
    )
    return Rendered(
        spec=parsed,
        uses=uses,
        endpoints=yaml.safe_load(config["data"][ENDPOINTS_FILE]),
        configmap=config,
        deployment=deploy,
        service=service(parsed, tag=parsed.model_tag, uid=uid),
    )
