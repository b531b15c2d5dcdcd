"""The reconcilers' view of objects: the watch's copy, or botenv's own newer write."""

from botenv.controller.state import State
from botenv.settings import Settings


class Store(list):
    """A kopf index value: the objects stored under one key."""


def obj(kind: str, name: str, rv: str, **extra: object) -> dict:
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
        **extra,
    }


def state(deployments: dict | None = None, environments: dict | None = None) -> State:
    return State(
        kube=None,
        settings=Settings(),
        environments=environments or {},
        tags={},
        children={"Deployment": deployments or {}},
    )


def test_own_write_is_seen_until_the_watch_delivers_it():
    old = obj("Deployment", "rasa-a", "10", spec={"replicas": 1})
    s = state({("ns", "rasa-a"): Store([old])})
    s.remember(obj("Deployment", "rasa-a", "12", spec={"replicas": 2}))
    assert s.child("Deployment", "ns", "rasa-a")["spec"]["replicas"] == 2
    # The watch catches up (or someone else wrote later): the index wins again.
    s.children["Deployment"][("ns", "rasa-a")] = Store(
        [obj("Deployment", "rasa-a", "15", spec={"replicas": 3})]
    )
    assert s.child("Deployment", "ns", "rasa-a")["spec"]["replicas"] == 3
    assert not s.written


def test_created_child_is_known_before_its_watch_event():
    s = state()
    s.remember(obj("Deployment", "rasa-new", "7"))
    assert s.child("Deployment", "ns", "rasa-new") is not None
    s.forget("Deployment", "ns", "rasa-new")  # a DELETED event
    assert s.child("Deployment", "ns", "rasa-new") is None


def test_deleted_environment_is_not_resurrected_from_a_status_write():
    s = state(environments={})
    s.remember(obj("BotEnvironment", "gone", "20", status={"queue": "q"}))
    assert s.environment("ns", "gone") is None


def test_a_child_botenv_deleted_is_not_seen_again_from_its_own_write():
    """A kind whose watch started late (an HTTPRoute once the Gateway API is installed) may
    never send the DELETED event: botenv's copy must not keep the child alive, or every
    resync deletes it again (a write on an idle cluster)."""
    from botenv.controller.environment.apply import _remove

    class Kube:
        deleted: list = []

        def delete(self, api_version, kind, namespace, name, uid=None):
            self.deleted.append((kind, name))

    s = state()
    s.kube = Kube()
    s.children["HTTPRoute"] = {}
    s.remember(obj("HTTPRoute", "rasa-chat", "7", apiVersion="gateway.networking.k8s.io/v1"))
    assert _remove(s, [("HTTPRoute", "ns", "rasa-chat")]) is None
    assert s.child("HTTPRoute", "ns", "rasa-chat") is None
    assert Kube.deleted == [("HTTPRoute", "rasa-chat")]
