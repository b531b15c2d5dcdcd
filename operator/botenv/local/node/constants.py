"""The local node's fixed settings."""

DEFAULT_SELECTOR = "app.kubernetes.io/managed-by=botenv"
DEFAULT_NODE = "botenv-kubelet"
KUBELET_VERSION = "v1.20.2"
HOST_IP = "127.0.0.1"
HEARTBEAT_SECONDS = 10.0
SERVICE_REFRESH_SECONDS = 1.0
RETRY_SECONDS = 2.0  # config errors, missing volumes, unknown images
RUNTIME = "botenv-test"
# Termination messages, as the kubelet bounds them (pkg/kubelet/container).
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
MAX_TERMINATION_MESSAGE = 4096  # MaxContainerTerminationMessageLength: the file's last bytes
MAX_FALLBACK_LOG_LINES = 80  # MaxContainerTerminationMessageLogLines
MAX_FALLBACK_LOG_BYTES = 2048  # MaxContainerTerminationMessageLogLength
