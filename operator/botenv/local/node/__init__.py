"""A local node: runs the pods of botenv's Deployments and Jobs as local processes.

The local control plane (operator/botenv/local/controlplane.py) has an API server and a controller
manager but no scheduler and no kubelet, so pods stay Pending. ``LocalKubelet`` fills both
roles for the pods that match a label selector (default ``app.kubernetes.io/managed-by=
botenv``):

- It registers a Node (Ready, with capacity and allocatable) and keeps its heartbeat fresh.
  It binds Pending pods that fit it (``nodeSelector``) to it with the Binding subresource.
- It runs every container as a local process group. ``images`` maps an image to an
  ``Image``: the local argv of its ENTRYPOINT and CMD. ``rasa/rasa`` runs the cached Rasa
  3.6.21 venv (``python -m rasa``), ``rasa/rasa-sdk`` runs ``python -m rasa_sdk``, and tests add
  their own. An unmapped image waits with reason ``ErrImagePull``, as on a real node.
- Environment from ``value``, ``valueFrom`` (secretKeyRef, configMapKeyRef, fieldRef,
  resourceFieldRef) and ``envFrom`` is read through the API at every start. ``$(VAR)`` is
  expanded in command, args and env values the way the kubelet does (``$$`` escapes). A
  missing Secret, ConfigMap or key makes the container wait with
  ``CreateContainerConfigError``, and the kubelet retries.
- Volumes: configMap and secret (with ``items`` and modes), emptyDir, downwardAPI,
  hostPath and projected (configMap, secret, downwardAPI and serviceAccountToken sources; the
  token comes from the TokenRequest API, bound to the pod, as the kubelet gets it). They are
  written under the pod's directory. Every mountPath is mapped to its directory there, and
  each occurrence of a mount path in command, args, env values, workingDir and exec probe
  commands is rewritten to the mapped path.
- Init containers run one at a time, in order, before the containers start; each must
  exit 0 before the next one starts. ``initContainerStatuses`` and the Initialized
  condition (False, ContainersNotInitialized, until the last one has exited 0) are
  reported as a kubelet does. A failed init container is restarted with back-off
  (restartPolicy Always or OnFailure); with Never the pod fails and its containers never
  start (they stay waiting with reason PodInitializing).
- Termination messages: each run of a container gets a fresh, empty, writable file for
  its ``terminationMessagePath`` (default /dev/termination-log) under the pod's directory,
  and the path is rewritten like a mount path. When the container exits, the file's last
  4096 bytes are ``state.terminated.message``. With ``terminationMessagePolicy:
  FallbackToLogsOnError``, a non-zero exit and an empty file, the message is the last 80
  lines of the run's output, at most 2048 bytes, as the kubelet does. A program that opens
  the path without getting it through its command, args or env cannot be redirected.
- Networking: each pod gets its own loopback address 127.0.X.Y (never 127.0.0.x), which is
  its ``status.podIP``. Its processes listen there on their own container ports
  (``Image.bind`` adds ``--interface`` for rasa and ``SANIC_HOST`` for rasa_sdk), so
  ``http://<podIP>:5005/status`` works from the test process as it would in a cluster.
  Inside a pod, Python processes (the containers and the exec probes) reach the pod's own
  ports on ``127.0.0.1``/``localhost`` too (see ``_SITECUSTOMIZE``).
- Service DNS names cannot be resolved by the processes. A tiny kube-proxy stands in: in
  configMap and secret volume files, env values and args, every
  ``<scheme>://<svc>.<ns>.svc[.cluster.local][:port]`` is rewritten to a virtual loopback IP
  of that Service. A proxy forwards each connection there to a Ready pod that the Service
  selects (its targetPort, by number or by name), chosen when the connection is made. A
  Service without a ready pod refuses connections until one is ready, which follows rolls
  and restarts. ``service_hosts`` sends a Service to an address outside the cluster instead
  (for example a server the test runs itself).
- Security contexts, as far as processes of the test's own user can hold them (see
  ``security``): the kubelet's runAsNonRoot check before a container starts (runAsUser 0,
  or no runAsUser and an image whose ``Image.user`` is root or a name, waits with
  CreateContainerConfigError and the kubelet's message); ``ProcessInfo.user`` is the user it
  would run as. With readOnlyRootFilesystem, the working directory, $HOME (the container's
  HOME variable, else ``Image.home``) and $TMPDIR (/tmp) are the container's volumes when
  one is mounted there, else read-only (0555) directories of its own root filesystem under
  the pod's directory; a write there fails for a process that is not root (as EROFS does),
  and one root makes is reported (a Warning event ReadOnlyRootFilesystem,
  ``ProcessInfo.root_writes``). Writes to other absolute paths are not caught.
- Probes: startup, readiness and liveness, each with httpGet (path, port by name or number,
  headers, scheme), tcpSocket or exec. They honour initialDelaySeconds, periodSeconds,
  timeoutSeconds, successThreshold and failureThreshold. A failed liveness or startup probe
  restarts the container.
- Status: it patches the pod's status like a kubelet (phase, podIP/podIPs, hostIP,
  startTime, conditions, initContainerStatuses and containerStatuses with state, lastState,
  ready, started, restartCount, image, imageID and containerID). The phase is the
  kubelet's: an exited container restarts with back-off (``CrashLoopBackOff`` in between)
  under restartPolicy Always, only after a non-zero exit under OnFailure, never under
  Never; the pod is Succeeded once every container exited 0 and will not restart, Failed
  once one failed and will not restart (then Ready and ContainersReady are False with
  reason PodCompleted if Succeeded, ContainersNotReady if Failed). So the Job controller of
  kube-controller-manager completes or fails Jobs, retries up to backoffLimit, and
  enforces activeDeadlineSeconds by deleting the pods (which kills their processes).
- Deletion: a pod with a deletionTimestamp gets SIGTERM, then SIGKILL after its grace
  period (capped at ``max_grace_seconds``). The kubelet then deletes it with
  gracePeriodSeconds=0. Leaving the context manager kills every process and deletes this
  node's pods and the Node.
- Logs: each container writes ``workdir/<ns>_<pod>/<container>.log``, appended across
  restarts. The kubelet's own log is ``workdir/kubelet.log``. ``logs()`` and
  ``processes()`` are there for tests. Every process dies with the test process (own
  process group, PR_SET_PDEATHSIG).

It polls the API every ``poll_seconds`` (0.5 s) with two label/field-selected LISTs. The
probes run on a small thread pool and the proxy on one asyncio thread.

Not emulated: ephemeral containers, lifecycle hooks, the pod's own activeDeadlineSeconds
(the Job controller's deadline works, see above), resource limits, the rest of the security
context (processes run as the test's user, with its capabilities; seccomp, privilege
escalation and capabilities are not applied), imagePullPolicy, hostPort/hostNetwork, live updates
of mounted ConfigMaps and Secrets (they are rewritten at each container start), Service
environment variables, affinity and tolerations (only nodeSelector is checked), gRPC
probes, and the pod sandbox restarts that make a kubelet run the init containers again.
"""

from botenv.local.node.api import KubeletError
from botenv.local.node.constants import DEFAULT_NODE, DEFAULT_SELECTOR
from botenv.local.node.envs import expand
from botenv.local.node.images import (
    BUILTIN_IMAGES,
    PYTHON,
    RASA_ENV,
    RASA_PYTHON,
    BindHook,
    Image,
    rasa_image,
    rasa_sdk_image,
    repository,
)
from botenv.local.node.kubelet import LocalKubelet
from botenv.local.node.state import ProcessInfo

__all__ = [
    "BUILTIN_IMAGES",
    "DEFAULT_NODE",
    "DEFAULT_SELECTOR",
    "PYTHON",
    "RASA_ENV",
    "RASA_PYTHON",
    "BindHook",
    "Image",
    "KubeletError",
    "LocalKubelet",
    "ProcessInfo",
    "expand",
    "rasa_image",
    "rasa_sdk_image",
    "repository",
]
