"""BotEnvironments and ModelTags in every state the operator's renderers produce, as the API
server would return them, each with the Argo CD health it must show."""

from __future__ import annotations

import copy
import dataclasses

from botenv.controller.tag import tag_status
from botenv.render.status import Problem, environment_status
from botenv.storage import ObjectInfo

T0 = "2024-01-01T00:00:00Z"
GENERATION = 4


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    obj: dict
    health: str  # what Argo CD must show
    message: str = ""  # a part of the message it must show
    rendered: bool = True  # False: a status the operator never writes (made up here)


def deployment(
    *,
    replicas: int = 2,
    updated: int = 2,
    available: int = 2,
    stalled: bool = False,
    generation: int = 7,
    observed: int = 7,
) -> dict:
    conditions = (
        [
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "rasa-production-5d8" has timed out progressing.',
            }
        ]
        if stalled
        else []
    )
    return {
        "metadata": {"name": "rasa-production", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": updated,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": conditions,
        },
    }


APPLIED = {
    "model": {"tag": "production", "name": "m1.tar.gz", "digest": "d1"},
    "modelServerUrl": "http://ms/models/bots/tags/production",
    "queue": "rasa_bots_production_events",
    "endpoint": "http://rasa-production.bots.svc:5005",
}


def environment(status: dict | None, *, generation: int = GENERATION) -> dict:
    obj = {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "BotEnvironment",
        "metadata": {
            "name": "production",
            "namespace": "bots",
            "generation": generation,
            "uid": "0b5e7c1a-0000-4000-8000-000000000001",
        },
        "spec": {"replicas": 2, "lockStore": {"type": "redis", "host": "redis.db"}},
    }
    if status is not None:
        obj["status"] = copy.deepcopy(status)
    return obj


def environment_rendered(
    *,
    problem: Problem | None = None,
    deploy: dict | None = None,
    previous: dict | None = None,
    generation: int = GENERATION,
) -> dict:
    """The status the operator writes, on an environment of `generation`."""
    return environment_status(
        previous=previous or {},
        generation=generation,
        problem=problem,
        deployment=deploy,
        replicas=2,
        applied=None if problem else APPLIED,
        timestamp=T0,
    )


def tag(status: dict | None, *, generation: int = GENERATION) -> dict:
    obj = {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTag",
        "metadata": {
            "name": "production",
            "namespace": "bots",
            "generation": generation,
            "uid": "0b5e7c1a-0000-4000-8000-000000000002",
        },
        "spec": {"model": "m2.tar.gz", "storage": {"provider": "local", "path": "/models"}},
    }
    if status is not None:
        obj["status"] = copy.deepcopy(status)
    return obj


GOOD_TAG = tag_status(
    {},
    resolved=ObjectInfo(key="m1.tar.gz", digest="d1", size=10),
    model="m1.tar.gz",
    problem=None,
    environments=["production"],
    generation=GENERATION - 1,
    history_limit=10,
    timestamp=T0,
)


def tag_rendered(
    problem: Problem | None = None, *, previous: dict | None = None, generation: int = GENERATION
) -> dict:
    """The status the operator writes on a tag of `generation` that was resolved before
    (GOOD_TAG) and now points to m2.tar.gz."""
    resolved = None if problem else ObjectInfo(key="m2.tar.gz", digest="d2", size=20)
    return tag_status(
        GOOD_TAG if previous is None else previous,
        resolved=resolved,
        model="m2.tar.gz",
        problem=problem,
        environments=["production"],
        generation=generation,
        history_limit=10,
        timestamp=T0,
    )


def environment_cases() -> list[Case]:
    degraded_by = {
        "InvalidSpec": "spec.replicas: must be >= 0",
        "TagNotFound": "ModelTag 'production' not found in namespace bots",
        "TagInvalid": "ModelTag 'production': spec.storage.bucket: required for s3",
        "SecretMissing": "Secret 'rasa-auth' has no key 'token' (spec.auth.tokenSecretRef)",
        "QueueConflict": "event queue 'q' is already used by BotEnvironment bots/other",
        "SecretUnreadable": "could not read Secret 'rasa-auth' (403): forbidden; retrying",
        "ApplyFailed": "could not apply Deployment rasa-production (500): boom; retrying",
    }
    cases = [
        Case(
            "just created, no status yet",
            environment(None),
            "Progressing",
            "Waiting for the botenv operator",
            rendered=False,
        ),
        Case(
            "spec changed, not observed yet",
            environment(environment_rendered(deploy=deployment(), generation=GENERATION - 1)),
            "Progressing",
            f"observe generation {GENERATION}",
        ),
        Case(
            "status without observedGeneration",
            environment(
                {
                    k: v
                    for k, v in environment_rendered(deploy=deployment()).items()
                    if k != "observedGeneration"
                }
            ),
            "Progressing",
            f"observe generation {GENERATION}",
            rendered=False,
        ),
        Case(
            "Deployment not created yet",
            environment(environment_rendered()),
            "Progressing",
            "waiting for the Deployment to be created",
        ),
        Case(
            "rolling out",
            environment(environment_rendered(deploy=deployment(updated=1, available=1))),
            "Progressing",
            "RollingOut: rolling out: 1 of 2 replicas updated",
        ),
        Case(
            "waiting for available replicas",
            environment(environment_rendered(deploy=deployment(available=1))),
            "Progressing",
            "1 of 2 updated replicas available",
        ),
        Case(
            "Deployment controller has not seen the new spec",
            environment(environment_rendered(deploy=deployment(observed=6))),
            "Progressing",
            "waiting for the Deployment controller",
        ),
        Case(
            "tag has no model yet",
            environment(
                environment_rendered(
                    problem=Problem(
                        "WaitingForTag", "ModelTag 'production' has no model yet", degraded=False
                    )
                )
            ),
            "Progressing",
            "WaitingForTag: ModelTag 'production' has no model yet",
        ),
        Case(
            "every replica serves the model",
            environment(environment_rendered(deploy=deployment())),
            "Healthy",
            "Ready: 2 of 2 replicas serve the model",
        ),
        Case(
            "rollout stalled",
            environment(
                environment_rendered(deploy=deployment(updated=1, available=1, stalled=True))
            ),
            "Degraded",
            "RolloutStalled: rollout stalled",
        ),
        Case(
            "recovered after a problem",
            environment(
                environment_rendered(
                    deploy=deployment(),
                    previous=environment_rendered(
                        problem=Problem("SecretMissing", "Secret 'x' not found"),
                        deploy=deployment(),
                        generation=GENERATION - 1,
                    ),
                )
            ),
            "Healthy",
            "Ready: 2 of 2",
        ),
    ]
    for reason, message in degraded_by.items():
        cases.append(
            Case(
                f"{reason} while the old Deployment serves",
                environment(
                    environment_rendered(problem=Problem(reason, message), deploy=deployment())
                ),
                "Degraded",
                f"{reason}: {message}",
            )
        )
        cases.append(
            Case(
                f"{reason} before any Deployment exists",
                environment(environment_rendered(problem=Problem(reason, message))),
                "Degraded",
                f"{reason}: {message}",
            )
        )
    return cases


def tag_cases() -> list[Case]:
    cases = [
        Case(
            "just created, no status yet",
            tag(None),
            "Progressing",
            "Waiting for the botenv operator to resolve the tag",
            rendered=False,
        ),
        Case(
            "spec changed, not observed yet",
            tag(GOOD_TAG),
            "Progressing",
            f"observe generation {GENERATION}",
        ),
        Case(
            "status without a Ready condition",
            tag({"observedGeneration": GENERATION, "conditions": []}),
            "Progressing",
            "resolve the tag",
            rendered=False,
        ),
        Case("resolved", tag(tag_rendered()), "Healthy", "Resolved: model m2.tar.gz (digest d2)"),
        Case("first resolution", tag(tag_rendered(previous={})), "Healthy", "m2.tar.gz"),
        Case(
            "model not found, the previous model stays",
            tag(
                tag_rendered(
                    Problem("ModelNotFound", "model 'm2.tar.gz' not found at /models (m2.tar.gz)")
                )
            ),
            "Degraded",
            "ModelNotFound: model 'm2.tar.gz' not found at /models (m2.tar.gz); "
            "the tag stays on m1.tar.gz",
        ),
        Case(
            "model not found, never resolved",
            tag(tag_rendered(Problem("ModelNotFound", "model 'm2.tar.gz' not found"), previous={})),
            "Degraded",
            "no environment can start until it resolves",
        ),
        Case(
            "storage refuses the credentials",
            tag(tag_rendered(Problem("StorageAccessDenied", "s3://b (m2.tar.gz): access denied"))),
            "Degraded",
            "StorageAccessDenied",
        ),
        Case(
            "storage Secret missing",
            tag(tag_rendered(Problem("SecretMissing", "Secret 's3' not found"))),
            "Degraded",
            "SecretMissing: Secret 's3' not found",
        ),
        Case(
            "invalid spec",
            tag(tag_rendered(Problem("InvalidSpec", "spec.storage.bucket: required for s3"))),
            "Degraded",
            "InvalidSpec: spec.storage.bucket",
        ),
        Case(
            "storage unreachable, retried",
            tag(
                tag_rendered(
                    Problem("StorageUnavailable", "s3://b (m2.tar.gz): timed out", retry=True)
                )
            ),
            "Progressing",
            "StorageUnavailable: s3://b (m2.tar.gz): timed out",
        ),
        Case(
            "storage Secret unreadable, retried",
            tag(
                tag_rendered(
                    Problem("SecretUnreadable", "could not read Secret 's3' (503)", retry=True)
                )
            ),
            "Progressing",
            "SecretUnreadable",
        ),
    ]
    return cases
