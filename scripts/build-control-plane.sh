#!/usr/bin/env bash
# Build the project's own Kubernetes control plane (etcd, kube-apiserver and
# kube-controller-manager) into
# ${BOTENV_CACHE:-$HOME/.cache/botenv}/kubernetes-$BUILD_ID/bin/.
#
#   BOTENV_KUBERNETES_VERSION=1.34 (default): Kubernetes 1.34.4 and etcd 3.6.16
#       from the Go module proxy, pinned by scripts/controlplane/go.mod and
#       scripts/controlplane/etcd/go.mod; needs Go >= 1.26 on PATH.
#   BOTENV_KUBERNETES_VERSION=1.20: Kubernetes 1.20.2 from Debian's source
#       package, compiled with Debian's Go 1.19 (golang-1.19-go), plus
#       Debian's etcd 3.4.
#
# Idempotent: exits at once when the binaries are there. Only package
# registries are used (no Docker, no prebuilt downloads). The 1.20 build needs
# root (or sudo) for apt.
set -Eeuo pipefail

SERIES="${BOTENV_KUBERNETES_VERSION:-1.34}"
case "$SERIES" in
    1.34)
        K8S_VERSION=1.34.4
        ETCD_VERSION=3.6.16
        # operator/botenv/local/controlplane.py VERSIONS must match.
        BUILD_ID="$K8S_VERSION"
        ;;
    1.20)
        K8S_VERSION=1.20.2
        # Bump the suffix when the build's patches or toolchain change, so caches
        # built without them are not reused (operator/botenv/local/controlplane.py
        # VERSIONS must match). p3: compiled with Debian's Go 1.19.
        BUILD_ID="$K8S_VERSION-p3"
        ;;
    *)
        echo "[build-control-plane] BOTENV_KUBERNETES_VERSION must be 1.34 or 1.20, got '$SERIES'" >&2
        exit 2
        ;;
esac
CACHE="${BOTENV_CACHE:-$HOME/.cache/botenv}"
ROOT="$CACHE/kubernetes-$BUILD_ID"
BIN="$ROOT/bin"
SRC="$ROOT/src"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BINARIES=(etcd kube-apiserver kube-controller-manager)
if [[ $SERIES == 1.20 ]]; then TOTAL=7; else TOTAL=5; fi
# Debian's Go 1.19 for the 1.20 build: Kubernetes 1.20 predates the Go on PATH.
GO119=/usr/lib/go-1.19/bin
STEP_NO=0
STEP_NAME="starting"

say() { echo "[build-control-plane] $*" >&2; }
step() {
    STEP_NO=$1
    STEP_NAME=$2
    echo "[build-control-plane $STEP_NO/$TOTAL] $STEP_NAME" >&2
}
on_error() {
    local rc=$?
    say "FAILED at step $STEP_NO/$TOTAL ($STEP_NAME), exit code $rc."
    say "Fix the cause above and run scripts/build-control-plane.sh again; finished steps are reused."
    exit "$rc"
}
trap on_error ERR

has_kubernetes_source() {
    [[ $(apt-cache showsrc kubernetes 2>/dev/null | grep -c '^Package: kubernetes$') -gt 0 ]]
}

have_all_binaries() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "$BIN/$b" ]] || return 1
    done
}

# Run "$@" in its own process group with its output in $1's log, and a heartbeat
# every minute. $2 says what to show meanwhile: "lines" shows the log's lines as
# they come (make prints few); "packages" counts them (`go build -v` prints one
# line per package compiled, thousands). Stopping this script stops the whole
# group and nothing else.
compile_with_progress() {
    local log=$1 show=$2
    shift 2
    : >"$log"
    local started=$SECONDS
    # setsid does not fork here (a background job of a non-interactive shell is
    # no group leader), so the job's pid is the group's id.
    setsid "$@" >"$log" 2>&1 &
    local pid=$!
    trap 'kill -TERM -- "-'"$pid"'" 2>/dev/null || true' EXIT
    trap 'say "interrupted"; exit 130' INT
    trap 'say "terminated"; exit 143' TERM
    local tail_pid=""
    if [[ $show == lines ]]; then
        tail -n +1 -f --pid="$pid" "$log" | sed -u 's/^/    | /' >&2 &
        tail_pid=$!
    fi
    local done_=""
    while kill -0 "$pid" 2>/dev/null; do
        for _ in $(seq 60); do
            sleep 1
            kill -0 "$pid" 2>/dev/null || break 2
        done
        [[ $show == packages ]] && done_=", $(wc -l <"$log") packages compiled"
        say "still compiling, $((SECONDS - started)) s elapsed$done_ (full log: $log)"
    done
    local rc=0
    wait "$pid" || rc=$?
    [[ -z $tail_pid ]] || wait "$tail_pid" 2>/dev/null || true
    trap - EXIT INT TERM
    if ((rc != 0)); then
        say "compile failed (exit $rc); last lines of $log:"
        tail -n 30 "$log" >&2
        return 1
    fi
    say "compiled in $((SECONDS - started)) s"
}

# Move the finished binaries in place; rename last, so a half-finished build
# never looks like a done one.
install_binaries() {
    local staging=$1
    "$staging/kube-apiserver" --version >&2
    "$staging/etcd" --version | head -n 1 >&2
    rm -rf "$BIN"
    mv "$staging" "$BIN"
}

# Kubernetes 1.34 from the Go module proxy (scripts/controlplane/).
build_from_modules() {
    local module="$HERE/controlplane"
    local staging="$ROOT/bin.partial"
    # readonly: go.mod and go.sum are the pins, never rewritten by a build.
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
    # A build cache of its own, removed after a good build (about 2 GB).
    export GOCACHE="$ROOT/go-build"

    # ---------------------------------------------------------------------------
    step 1 "checking the Go toolchain (Go >= 1.26 on PATH; etcd $ETCD_VERSION needs it)"
    command -v go >/dev/null || {
        say "no 'go' on PATH: install Go 1.26 or newer (go.dev/dl), or use BOTENV_KUBERNETES_VERSION=1.20"
        false
    }
    local gov
    gov=$(go env GOVERSION)
    local minor=${gov#go1.}
    minor=${minor%%.*}
    if ! [[ $minor =~ ^[0-9]+$ ]] || ((minor < 26)); then
        say "$(command -v go) is $gov; this build needs Go >= 1.26"
        false
    fi
    say "using $(command -v go) ($gov, GOTOOLCHAIN=local)"

    # ---------------------------------------------------------------------------
    step 2 "downloading the pinned modules from the Go module proxy (150 MB, 800 MB unpacked; once)"
    local started=$SECONDS
    # go.sum pins every module's hash: a download that does not match fails here.
    (cd "$module" && go mod download)
    (cd "$module/etcd" && go mod download)
    say "modules ready in $((SECONDS - started)) s ($(go env GOMODCACHE))"

    rm -rf "$staging"
    mkdir -p "$staging"
    local ld="-s -w"
    local v
    for v in gitVersion=v$K8S_VERSION gitMajor=${K8S_VERSION%%.*} gitTreeState=clean; do
        ld="$ld -X k8s.io/component-base/version.$v"
    done
    minor=${K8S_VERSION#*.}
    ld="$ld -X k8s.io/component-base/version.gitMinor=${minor%%.*}"

    # ---------------------------------------------------------------------------
    step 3 "compiling kube-apiserver and kube-controller-manager $K8S_VERSION (5-8 minutes on 2 cores)"
    compile_with_progress "$ROOT/go-build.log" packages env -C "$module" \
        go build -v -trimpath -ldflags="$ld" -o "$staging/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager

    # ---------------------------------------------------------------------------
    step 4 "compiling etcd $ETCD_VERSION (about a minute)"
    compile_with_progress "$ROOT/go-build-etcd.log" packages env -C "$module/etcd" \
        go build -v -trimpath -ldflags="-s -w" -o "$staging/etcd" .

    # ---------------------------------------------------------------------------
    step 5 "installing binaries into $BIN"
    install_binaries "$staging"
    rm -rf "$GOCACHE"
}

# Everything runs inside main so bash parses the whole script before acting:
# editing or pulling this file during a build cannot derail a running one (see
# the last line).
main() {
    if have_all_binaries; then
        say "control plane binaries already built in $BIN"
        exit 0
    fi

    mkdir -p "$ROOT"
    # One build at a time per cache (two test sessions may start together).
    exec 9>"$ROOT/.build.lock"
    if ! flock -n 9; then
        say "another build is running in $ROOT; waiting for it"
        flock 9
    fi
    if have_all_binaries; then
        say "control plane binaries were built meanwhile in $BIN"
        exit 0
    fi
    say "building Kubernetes $K8S_VERSION into $BIN"
    local began=$SECONDS
    if [[ $SERIES == 1.20 ]]; then
        build_from_debian_source
    else
        build_from_modules
    fi
    say "done in $((SECONDS - began)) s: $BIN"
    ls -l "$BIN" >&2
}

# Kubernetes 1.20.2 from Debian's source package, with Debian's Go 1.19.
build_from_debian_source() {
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { say "need root or sudo to install apt packages"; exit 1; }
        SUDO=(sudo)
    fi

    # ---------------------------------------------------------------------------
    step 1 "installing build tools from apt (golang-1.19-go, etcd-server, make, rsync, openssl, python3)"
    # command -> Debian package that provides it
    declare -A PKG_FOR=(
        [$GO119/go]=golang-1.19-go [etcd]=etcd-server [make]=make [rsync]=rsync
        [openssl]=openssl [python3]=python3 [tar]=tar [flock]=util-linux [setsid]=util-linux
    )
    missing=()
    for cmd in "${!PKG_FOR[@]}"; do
        command -v "$cmd" >/dev/null || missing+=("${PKG_FOR[$cmd]}")
    done
    if ((${#missing[@]})); then
        say "missing packages: ${missing[*]}"
        STEP_NAME="apt-get update"
        "${SUDO[@]}" apt-get update -q
        STEP_NAME="apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q "${missing[@]}"
    fi
    # Kubernetes 1.20 is built with the Go of its time, whatever Go is first on PATH.
    export PATH="$GO119:$PATH" GOTOOLCHAIN=local
    say "build tools present ($(go version | cut -d' ' -f3) from $(command -v go), etcd $(etcd --version | awk 'NR == 1 {print $3}'))"

    # ---------------------------------------------------------------------------
    step 2 "enabling Debian source packages (deb-src) in apt"
    SRC_LIST=/etc/apt/sources.list.d/botenv-debian-src.sources
    # Pipelines here read their input to the end: an early-closing reader
    # (grep -q, head) would make pipefail report the writer's SIGPIPE.
    if has_kubernetes_source; then
        say "deb-src already enabled"
    else
        # Twin every deb822 stanza of the main Debian archive as deb-src (same
        # URIs/Suites/Components/Signed-By); also old one-line sources.list.
        tmp_list=$(mktemp)
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -e "$f" && "$f" != "$SRC_LIST" ]] || continue
            awk -v RS='' -v ORS='\n\n' '
                /(^|\n)Types:[^\n]*deb/ && /(^|\n)URIs:[^\n]*\/debian\/?([ \n]|$)/ {
                    n = split($0, lines, "\n"); out = ""
                    for (i = 1; i <= n; i++) {
                        if (lines[i] ~ /^#/) continue
                        if (lines[i] ~ /^Types:/) lines[i] = "Types: deb-src"
                        out = out lines[i] "\n"
                    }
                    printf "%s\n", out
                }' "$f" >>"$tmp_list"
        done
        if [[ -f /etc/apt/sources.list ]]; then
            grep -E '^deb\s+.*/debian/?\s' /etc/apt/sources.list \
                | sed -E 's/^deb(\s)/deb-src\1/' >"$tmp_list.oneline" || true
            if [[ -s "$tmp_list.oneline" ]]; then
                "${SUDO[@]}" cp "$tmp_list.oneline" /etc/apt/sources.list.d/botenv-debian-src.list
            fi
            rm -f "$tmp_list.oneline"
        fi
        if [[ -s "$tmp_list" ]]; then
            "${SUDO[@]}" install -m 0644 "$tmp_list" "$SRC_LIST"
            say "wrote $SRC_LIST"
        fi
        rm -f "$tmp_list"
        STEP_NAME="apt-get update (with deb-src)"
        "${SUDO[@]}" apt-get update -q
        STEP_NAME="looking up source package kubernetes"
        has_kubernetes_source || {
            say "apt knows no source package 'kubernetes' even with deb-src enabled; check /etc/apt/sources.list.d/"
            false
        }
    fi

    # ---------------------------------------------------------------------------
    step 3 "downloading Debian source package kubernetes ($K8S_VERSION, about 30 MB)"
    DL="$ROOT/download"
    mkdir -p "$DL"
    orig=$(find "$DL" -maxdepth 1 -name "kubernetes_*.orig.tar.*" -print -quit)
    if [[ -z "$orig" ]]; then
        (cd "$DL" && apt-get source --download-only -q kubernetes)
        orig=$(find "$DL" -maxdepth 1 -name "kubernetes_*.orig.tar.*" -print -quit)
    fi
    [[ -n "$orig" ]] || { say "apt-get source gave no kubernetes_*.orig.tar.* in $DL"; false; }
    say "source: $(basename "$orig")"

    # ---------------------------------------------------------------------------
    step 4 "unpacking the source (with vendor/)"
    if [[ -f "$SRC/.botenv-unpacked" ]]; then
        say "reusing unpacked source in $SRC"
    else
        rm -rf "$SRC" "$SRC.partial"
        mkdir -p "$SRC.partial"
        tar -xf "$orig" -C "$SRC.partial" || {
            rm -f "$orig"  # probably a broken download: fetch it again next run
            say "could not unpack $(basename "$orig"); removed it, run again to re-download"
            false
        }
        # The tarball has a single top directory; make SRC the source root.
        top=$(find "$SRC.partial" -mindepth 1 -maxdepth 1)
        if [[ $(echo "$top" | wc -l) -eq 1 && -d "$top" ]]; then
            mv "$top" "$SRC"
            rmdir "$SRC.partial"
        else
            mv "$SRC.partial" "$SRC"
        fi
        [[ -f "$SRC/Makefile" && -d "$SRC/vendor" ]] || { say "unpacked tree lacks Makefile or vendor/"; false; }
        touch "$SRC/.botenv-unpacked"
    fi

    # ---------------------------------------------------------------------------
    step 5 "patching vendored code for today's Go (reflect2 mapiterinit, kube-openapi zero values)"
    python3 "$HERE/patch-reflect2.py" "$SRC/vendor/github.com/modern-go/reflect2"
    python3 "$HERE/patch-kube-openapi.py" "$SRC/vendor/k8s.io/kube-openapi"

    # ---------------------------------------------------------------------------
    step 6 "compiling kube-apiserver and kube-controller-manager (4-5 minutes on 2 cores)"
    GOARCH_=$(go env GOARCH)
    mkdir -p "$SRC/.go/src/k8s.io"
    ln -sfn ../../.. "$SRC/.go/src/k8s.io/kubernetes"
    # Version stamped into the binaries (there is no git history in the tarball).
    local minor=${K8S_VERSION#*.}
    printf "%s\n" "KUBE_GIT_COMMIT=''" "KUBE_GIT_TREE_STATE='clean'" \
        "KUBE_GIT_VERSION='v$K8S_VERSION'" "KUBE_GIT_MAJOR='${K8S_VERSION%%.*}'" \
        "KUBE_GIT_MINOR='${minor%%.*}'" >"$SRC/.botenv-version"
    # hack/lib/golang.sh sets its own GOPATH/GOCACHE under _output/.
    compile_with_progress "$ROOT/make.log" lines env -C "$SRC" GOPATH="$SRC/.go" CGO_ENABLED=0 \
        KUBE_GIT_VERSION_FILE="$SRC/.botenv-version" \
        make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"

    # ---------------------------------------------------------------------------
    step 7 "installing binaries into $BIN and removing the source tree"
    out="$SRC/_output/local/bin/linux/$GOARCH_"
    staging="$ROOT/bin.partial"
    rm -rf "$staging"
    mkdir -p "$staging"
    for b in kube-apiserver kube-controller-manager; do
        [[ -x "$out/$b" ]] || { say "make did not produce $out/$b"; false; }
        cp "$out/$b" "$staging/$b"
    done
    cp "$(command -v etcd)" "$staging/etcd"
    install_binaries "$staging"
    rm -rf "$SRC" "$DL"
}

# exit on the same line: bash reads a script as it runs, so a file changed during a
# build must not be read on after main returns.
main "$@"; exit
