#!/usr/bin/env bash
# Installs the tools scripts/check-deploy.sh runs; installs only what is missing, so a second
# run takes well under a second. scripts/test.sh runs it before check-deploy.sh.
#   Debian: yamllint; prometheus (for promtool; on these machines /usr/sbin/policy-rc.d
#     keeps the package from starting a Prometheus server); kubernetes-client (kubectl, for
#     `kubectl kustomize`) only when there is no kubectl at all; jq; python3-venv if needed.
#   PyPI, in a private venv (CHECK_TOOLS_VENV, default ~/.cache/heat-pipeline/check-tools):
#     kubernetes-validate (ships the Kubernetes JSON schemas) and cloudcoil-models-keda
#     (models generated from KEDA's CRDs; its newer releases need Python 3.14), with a
#     pydantic whose model_validate takes extra="forbid".
# The Docker compose v2 plugin is scripts/setup.sh's business, not this script's.
set -euo pipefail

PY_PKGS=(kubernetes-validate==1.37.0 cloudcoil-models-keda==2.16.1.0 pydantic==2.14.4)
VENV="${CHECK_TOOLS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/heat-pipeline/check-tools}"
PY=/usr/bin/python3
[[ -x "$PY" ]] || PY=python3

log() { echo "install-check-tools: $*" >&2; }

apt_pkgs=()
command -v yamllint >/dev/null 2>&1 || apt_pkgs+=(yamllint)
command -v promtool >/dev/null 2>&1 || apt_pkgs+=(prometheus)
command -v kubectl >/dev/null 2>&1 || apt_pkgs+=(kubernetes-client)
command -v jq >/dev/null 2>&1 || apt_pkgs+=(jq)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_pkgs+=(python3-venv)

if ((${#apt_pkgs[@]})); then
  sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      log "FAIL: installing ${apt_pkgs[*]} needs root or sudo"
      exit 1
    fi
    sudo=(sudo -n)
  fi
  log "installing with apt-get: ${apt_pkgs[*]}"
  out="$(mktemp)"
  trap 'rm -f "$out"' EXIT
  if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${apt_pkgs[@]}"; } \
    >"$out" 2>&1; then
    cat "$out" >&2
    log "FAIL: apt-get install ${apt_pkgs[*]}"
    exit 1
  fi
fi

# The stamp records what the venv holds: a changed PY_PKGS reinstalls.
if [[ "$(cat "$VENV/.installed" 2>/dev/null)" != "${PY_PKGS[*]}" ]]; then
  log "installing with pip into $VENV: ${PY_PKGS[*]}"
  [[ ! -e "$VENV/pyvenv.cfg" ]] || rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}" >&2
  echo "${PY_PKGS[*]}" >"$VENV/.installed"
fi

log "ready: $(yamllint --version), promtool $(promtool --version | awk 'NR == 1 {print $3}'),\
 kubectl $(kubectl version --client 2>/dev/null | awk 'NR == 1 {print $3}'), $VENV (${PY_PKGS[*]})"
