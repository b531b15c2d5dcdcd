#!/usr/bin/env bash
# botenv end to end on a local kind cluster, where Docker and kind are available:
#
#   1. create the kind cluster of kind-config.yaml (kept if it exists)
#   2. build the image (Dockerfile) and load it into the cluster
#   3. helm install the chart (helm from scripts/fetch-helm.sh), with a models volume
#   4. apply the samples (server dry run: they name cloud buckets and fake credentials)
#   5. train a small model with Rasa (a Job) into the models volume, tag it, run a
#      BotEnvironment that follows the tag, and wait until it is Ready (Rasa loaded the model
#      from botenv's model server)
#   6. promote: move the tag to a second model and wait until the environment serves it
#
#   scripts/kind-e2e.sh                   run it; deletes the cluster at the end
#   BOTENV_KIND_KEEP=1 scripts/kind-e2e.sh   keep the cluster to look around
#
# It cannot run on machines without a Docker engine (such as this project's CI): the tests
# under tests/install and tests/cluster, on a real API server, are the checks that run there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

CLUSTER=botenv
IMAGE=botenv:e2e
RASA_IMAGE="${BOTENV_E2E_RASA_IMAGE:-rasa/rasa:3.6.21-full}"
NS=botenv-system
BOTS=bots-e2e

say() { echo "[kind-e2e] $*" >&2; }
die() { say "$*"; exit 1; }

missing=()
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  die "needs ${missing[*]} on PATH (Docker engine, kind, kubectl). This script cannot run" \
      "here; the tests in tests/install and tests/cluster check botenv on a real API server."
fi
if ! docker info >/dev/null 2>&1; then
  die "the Docker engine is not reachable (docker info failed). Start Docker, or use the" \
      "tests in tests/install and tests/cluster, which need no Docker."
fi
helm="$(scripts/fetch-helm.sh)"

# shellcheck disable=SC2329  # called by the EXIT trap
cleanup() {
  if [ "${BOTENV_KIND_KEEP:-0}" = 1 ]; then
    say "keeping the cluster: kubectl --context kind-$CLUSTER ...; kind delete cluster --name $CLUSTER"
  else
    say "deleting the cluster (BOTENV_KIND_KEEP=1 keeps it)"
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
}

say "1/6 kind cluster $CLUSTER"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --config kind-config.yaml --wait 120s
fi
trap cleanup EXIT
export KUBECONFIG="${KUBECONFIG:-$HOME/.kube/config}"
kubectl config use-context "kind-$CLUSTER" >/dev/null

say "2/6 building $IMAGE and loading it into the cluster"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

say "3/6 helm install (namespace $NS) with a models volume for storage provider local"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: models, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
EOF
models_volume='{"name":"models","persistentVolumeClaim":{"claimName":"models"}}'
models_mount='{"name":"models","mountPath":"/models","readOnly":true}'
"$helm" upgrade --install botenv helm/botenv --namespace "$NS" --wait --timeout 5m \
  --set image.repository=botenv --set image.tag=e2e --set image.pullPolicy=Never \
  --set-json "operator.extraVolumes=[$models_volume]" \
  --set-json "operator.extraVolumeMounts=[$models_mount]" \
  --set-json "modelServer.extraVolumes=[$models_volume]" \
  --set-json "modelServer.extraVolumeMounts=[$models_mount]"
kubectl -n "$NS" rollout status deployment/botenv-operator --timeout=3m
kubectl -n "$NS" rollout status deployment/botenv-model-server --timeout=3m

say "4/6 samples (server dry run)"
kubectl create namespace bots --dry-run=client -o yaml | kubectl apply -f -
kubectl apply --dry-run=server -f manifests/samples/

say "5/6 training a model with $RASA_IMAGE (a few minutes), tag, environment"
kubectl -n "$NS" delete job train --ignore-not-found
kubectl apply -f - <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: train, namespace: $NS}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: rasa
          image: $RASA_IMAGE
          command: [sh, -c]
          args:
            - >-
              rasa init --no-prompt --init-dir /tmp/project &&
              cp /tmp/project/models/*.tar.gz /models/e2e-1.tar.gz &&
              cp /models/e2e-1.tar.gz /models/e2e-2.tar.gz && ls -l /models
          volumeMounts: [{name: models, mountPath: /models}]
      volumes: [{name: models, persistentVolumeClaim: {claimName: models}}]
EOF
kubectl -n "$NS" wait --for=condition=Complete job/train --timeout=20m

kubectl apply -f - <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $BOTS}
---
apiVersion: botenv.dev/v1alpha1
kind: ModelTag
metadata: {name: production, namespace: $BOTS}
spec:
  model: e2e-1.tar.gz
  storage: {provider: local, path: /models}
---
apiVersion: botenv.dev/v1alpha1
kind: BotEnvironment
metadata: {name: production, namespace: $BOTS}
spec:
  image: $RASA_IMAGE
  replicas: 1
EOF
kubectl -n "$BOTS" wait --for=condition=Ready benv/production --timeout=15m
kubectl get benv,mtag -n "$BOTS"

say "6/6 promote: move the tag to e2e-2.tar.gz"
kubectl -n "$BOTS" patch mtag production --type merge -p '{"spec":{"model":"e2e-2.tar.gz"}}'
for _ in $(seq 1 180); do
  served="$(kubectl -n "$BOTS" get benv production -o jsonpath='{.status.model.name}')"
  ready="$(kubectl -n "$BOTS" get benv production \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')"
  if [ "$served" = e2e-2.tar.gz ] && [ "$ready" = True ]; then
    kubectl get benv,mtag -n "$BOTS"
    say "passed: the environment serves the promoted model"
    exit 0
  fi
  sleep 5
done
kubectl -n "$BOTS" get benv production -o yaml >&2
die "the environment did not become Ready on e2e-2.tar.gz within 15 minutes"
