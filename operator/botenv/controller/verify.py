"""Which model each ready Rasa pod actually serves, from its own `GET /status`.

A Deployment that finished rolling out only says the pods run the new template; with
delivery `pull` the model arrives afterwards (and a HotSwap environment never rolls at all).
Asking every ready pod is how botenv knows the environment serves the tag's model.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from botenv.render import conditions as cond

log = logging.getLogger(__name__)

NO_ANSWER = ""


def pod_view(body: dict[str, Any]) -> dict[str, Any]:
    """The little botenv keeps of a Rasa pod (the index holds this, not whole pods)."""
    status = body.get("status") or {}
    ready = cond.get(status.get("conditions"), cond.READY).get("status") == "True"
    meta = body.get("metadata") or {}
    return {
        "name": meta.get("name", ""),
        "ip": status.get("podIP") or "",
        "ready": ready and not meta.get("deletionTimestamp"),
    }


async def served_models(
    pods: list[dict[str, Any]], *, port: int, token: str | None, timeout: float = 3.0
) -> dict[str, str]:
    """Pod name -> the `model_file` its Rasa reports, or NO_ANSWER, for the ready pods."""
    ready = [p for p in pods if p["ready"] and p["ip"]]
    if not ready:
        return {}
    # Rasa's --auth-token is a query parameter; it goes to the pod only, never to a log.
    params = {"token": token} if token else None

    async def ask(session: aiohttp.ClientSession, pod: dict[str, Any]) -> str:
        host = f"[{pod['ip']}]" if ":" in pod["ip"] else pod["ip"]
        try:
            async with session.get(f"http://{host}:{port}/status", params=params) as r:
                if r.status != 200:
                    return NO_ANSWER
                return str((await r.json()).get("model_file") or NO_ANSWER)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("pod %s did not answer /status: %s", pod["name"], type(exc).__name__)
            return NO_ANSWER

    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        answers = await asyncio.gather(*(ask(session, p) for p in ready))
    return {p["name"]: a for p, a in zip(ready, answers, strict=True)}
