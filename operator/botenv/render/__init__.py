"""Pure functions from typed specs to Kubernetes manifests (plain dicts). No I/O here."""
