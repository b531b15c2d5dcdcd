"""botenv: a Kubernetes operator that runs Rasa assistants in named environments."""

GROUP = "botenv.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "botenv"
