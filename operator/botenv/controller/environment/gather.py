"""Gather: the only reads of a BotEnvironment reconcile. The environment, its tag, its
rivals for an event queue and botenv's own children come from the watches' indexes; the
Secrets the pods use are read through the API (they are not watched)."""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from botenv.api import SpecError, parse_environment
from botenv.controller.environment import exposure
from botenv.controller.environment.plan import secrets_to_read
from botenv.controller.environment.seen import Seen
from botenv.controller.state import State
from botenv.kube.client import api_message
from botenv.render import autoscaling, disruption, names, pulltoken
from botenv.render.problem import Problem


def gather(state: State, namespace: str, name: str) -> Seen:
    seen = Seen(
        namespace,
        name,
        state.environment(namespace, name),
        pull_token=state.child("Secret", namespace, names.pull_token_secret_name(name)),
        deployment=state.child("Deployment", namespace, names.rasa_name(name)),
    )
    if seen.body is None or seen.deleting:
        return seen
    try:
        seen.spec = spec = parse_environment(seen.body, state.settings.default_image)
    except SpecError as exc:
        seen.invalid = str(exc)
        return seen
    seen.tag = state.tag(namespace, spec.model_tag)
    seen.deployment = state.child("Deployment", namespace, names.rasa_name(name))
    seen.pods = state.pods_of(namespace, name)
    for module in (autoscaling, disruption):
        for child in (names.rasa_name(name), names.action_server_name(name)):
            seen.scaling[(module.KIND, child)] = state.child(module.KIND, namespace, child)
        try:  # API discovery, once per operator: which version the server serves
            seen.api_versions[module.KIND] = state.kube.served_version(module.API_VERSIONS)
        except ApiException as exc:
            seen.unreadable = Problem(
                "DiscoveryFailed",
                f"could not read which {module.KIND} API the server serves "
                f"({exc.status}): {api_message(exc)}; retrying",
                retry=True,
            )
    if spec.event_broker is not None:
        seen.environments = list(state.all_environments())
    seen.action_server = {
        kind: state.child(kind, namespace, names.action_server_name(name))
        for kind in ("Deployment", "Service")
    }
    exposure.gather(state, seen)
    if spec.delivery == "pull" and seen.pull_token is None:
        seen.new_token = pulltoken.new_token()
    for secret in secrets_to_read(seen) or []:
        try:
            seen.secrets[secret] = _secret_data(state, namespace, secret)
        except ApiException as exc:
            seen.unreadable = Problem(
                "SecretUnreadable",
                f"could not read Secret {secret!r} ({exc.status}): {api_message(exc)}; retrying",
                retry=True,
            )
            break
    return seen


def _secret_data(state: State, namespace: str, name: str) -> dict[str, str] | None:
    own = state.child("Secret", namespace, name)
    if own is not None:
        # botenv's own Secrets (pull tokens) are watched: no API call for them.
        return dict(own.get("data") or {})
    return state.kube.get_secret_data(namespace, name)
