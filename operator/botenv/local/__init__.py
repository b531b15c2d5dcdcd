"""Running botenv's surroundings on this machine: local processes, a local node.

``botenv.local.processes`` starts, waits for and stops server processes (each in its own
process group, dying with the process that started it); ``botenv.local.node`` runs the
pods of a Kubernetes API server as local processes (a kubelet and scheduler for one node).
Used by ``scripts/run`` and by the tests; nothing here is imported by the operator itself.
"""
