#!/usr/bin/env bash
# Install the service peers that the tests start themselves from Debian's
# packages: PostgreSQL, Redis and RabbitMQ for the end-to-end tests
# (tests/support/peers.py), Prometheus and promtool for the monitoring checks
# (tests/support/prometheus.py). Only what is missing is installed; when
# everything is there the script exits at once without touching apt.
#
#   scripts/install-peers.sh                  all four
#   scripts/install-peers.sh redis-server     only the named ones (postgresql,
#                                             redis-server, rabbitmq-server,
#                                             prometheus)
#
# It never starts a system service: the tests run private servers on free
# loopback ports. Needs root (or sudo) for apt.
set -Eeuo pipefail

TOTAL=4
STEP_NO=0
STEP_NAME="starting"
POLICY_RC=/usr/sbin/policy-rc.d
OWN_POLICY=""

say() { echo "[install-peers] $*" >&2; }
step() {
    STEP_NO=$1
    STEP_NAME=$2
    echo "[install-peers $STEP_NO/$TOTAL] $STEP_NAME" >&2
}
on_error() {
    local rc=$?
    say "FAILED at step $STEP_NO/$TOTAL ($STEP_NAME), exit code $rc."
    say "Fix the cause above and run scripts/install-peers.sh again; installed packages are kept."
    exit "$rc"
}
trap on_error ERR

# The PostgreSQL server binaries: Debian keeps them in /usr/lib/postgresql/<major>/bin
# (tests/support/peers.py looks there and on PATH, and honours $BOTENV_PG_BIN).
have_postgres() {
    local dir
    if [[ -n "${BOTENV_PG_BIN:-}" ]]; then
        [[ -x "$BOTENV_PG_BIN/postgres" && -x "$BOTENV_PG_BIN/initdb" ]]
        return
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/postgres" && -x "$dir/initdb" ]] && return 0
    done
    command -v postgres >/dev/null && command -v initdb >/dev/null
}
have_psql() {
    command -v psql >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/psql" >/dev/null
}
have_redis() { command -v redis-server >/dev/null && command -v redis-cli >/dev/null; }
have_rabbitmq() {
    [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server && -x /usr/lib/rabbitmq/bin/rabbitmqctl ]] &&
        command -v epmd >/dev/null
}
have_prometheus() { command -v prometheus >/dev/null && command -v promtool >/dev/null; }

# package -> the check that says it is installed
ALL_PACKAGES=(postgresql redis-server rabbitmq-server prometheus)
PACKAGES=()
check_package() {
    case $1 in
        postgresql) have_postgres && have_psql ;;
        redis-server) have_redis ;;
        rabbitmq-server) have_rabbitmq ;;
        prometheus) have_prometheus ;;
        *) return 2 ;;
    esac
}
missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        check_package "$p" || echo "$p"
    done
}

cleanup() {
    # Remove the policy-rc.d this script put in place (never one it found).
    if [[ -n "$OWN_POLICY" ]]; then
        "${SUDO[@]}" rm -f "$OWN_POLICY"
    fi
}

# Everything runs inside main so bash parses the whole script before acting.
main() {
    local arg
    for arg in "$@"; do
        case $arg in
            postgresql | redis-server | rabbitmq-server | prometheus) PACKAGES+=("$arg") ;;
            *)
                say "unknown peer package '$arg' (known: ${ALL_PACKAGES[*]})"
                exit 2
                ;;
        esac
    done
    ((${#PACKAGES[@]})) || PACKAGES=("${ALL_PACKAGES[@]}")

    step 1 "checking for ${PACKAGES[*]}"
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        say "all peers present; nothing to install"
        exit 0
    fi
    say "missing: ${missing[*]}"

    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || {
            say "need root or sudo to install ${missing[*]} with apt-get"
            false
        }
        SUDO=(sudo)
    fi
    command -v apt-get >/dev/null || { say "apt-get not found: this script needs Debian"; false; }

    # One installer at a time on this machine (parallel test sessions); apt's own lock
    # would make the second one fail instead of wait.
    exec 9>"${TMPDIR:-/tmp}/botenv-install-peers.lock"
    if ! flock -n 9; then
        say "another install-peers is running; waiting for it"
        flock 9
    fi
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        say "the peers were installed meanwhile"
        exit 0
    fi

    # Package scripts must not start the system services (on a machine with systemd or
    # SysV init they would; prometheus ships a unit too): a policy-rc.d that refuses,
    # only while this script runs, and only when the machine has none of its own.
    trap cleanup EXIT
    if [[ ! -e "$POLICY_RC" ]]; then
        printf '#!/bin/sh\n# botenv install-peers: no services started during install\nexit 101\n' |
            "${SUDO[@]}" tee "$POLICY_RC" >/dev/null
        "${SUDO[@]}" chmod 0755 "$POLICY_RC"
        OWN_POLICY=$POLICY_RC
    fi

    # ---------------------------------------------------------------------------
    step 2 "apt-get update"
    "${SUDO[@]}" apt-get update -q -o DPkg::Lock::Timeout=600

    # ---------------------------------------------------------------------------
    step 3 "installing ${missing[*]}"
    local pkg started
    for pkg in "${missing[@]}"; do
        STEP_NAME="apt-get install $pkg"
        say "$STEP_NAME"
        started=$SECONDS
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends -o DPkg::Lock::Timeout=600 \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$pkg"
        say "$pkg installed in $((SECONDS - started)) s"
    done

    # ---------------------------------------------------------------------------
    step 4 "checking the installed binaries"
    for pkg in "${PACKAGES[@]}"; do
        STEP_NAME="checking $pkg"
        check_package "$pkg" || {
            say "$pkg is installed but its binaries are not where the tests look for them"
            false
        }
    done
    say "done: ${missing[*]} installed"
}

main "$@"
