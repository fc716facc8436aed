#!/usr/bin/env bash
# Checks the deployment files with the standard tools, one line per check; exits 1 if any
# FAILed. It installs nothing: a missing tool FAILs with "run scripts/install-check-tools.sh".
# - docker-compose*.yml: `docker compose config -q` (the v2 plugin scripts/setup.sh installs),
#   else Debian's docker-compose v1 if installed, else skip (Debian 12 has no v2 plugin and
#   Docker's own repository cannot be reached here).
# - yamllint (.yamllint) over those, deploy/kubernetes and deploy/prometheus.
# - deploy/kubernetes: kubernetes-validate --strict (the Kubernetes schemas it ships); KEDA
#   objects against cloudcoil-models-keda (pydantic models generated from KEDA's CRDs), as
#   no KEDA JSON schema is packaged in Debian or on PyPI and its CRDs cannot be downloaded
#   here; `kubectl kustomize`; policy: kustomization.yaml lists every manifest but the
#   Secret template, which holds CHANGE_ME placeholders only.
# - deploy/prometheus: `promtool check rules`, `promtool test rules` (*.test.yaml).
# - deploy/grafana: jq parses; panel PromQL, Grafana variables replaced, via promtool.
# A Rust test checks that dashboards and rules use only metrics the code registers.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

VENV="${CHECK_TOOLS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/heat-pipeline/check-tools}"
K8S=deploy/kubernetes PROM=deploy/prometheus
failed=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

say() {
  printf 'check-deploy: %-4s %s\n' "$1" "$2"
  [[ "$1" != FAIL ]] || failed=$((failed + 1))
}
# run WHAT COMMAND...: ok if COMMAND exits 0 (and prints no WARN), else FAIL with its output.
run() {
  local what="$1" out
  shift
  if ! command -v "$1" >/dev/null 2>&1; then
    say FAIL "$what: $1 missing (run scripts/install-check-tools.sh)"
  elif out="$("$@" 2>&1)" && ! grep -q '^WARN' <<<"$out"; then
    say ok "$what"
  else
    say FAIL "$what: $(tr -s '\n' ' ' <<<"$out" | cut -c1-500)"
  fi
}

# --- docker-compose*.yml: the offline file as an override of docker-compose.yml, the others
# (docker-compose.yml, docker-compose.cluster.yml) alone -------------------------------------
compose=()
if docker compose version >/dev/null 2>&1; then compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose); fi
for f in docker-compose*.yml; do
  files=(-f "$f")
  [[ "$f" != docker-compose.offline.yml ]] || files=(-f docker-compose.yml -f "$f")
  if ((${#compose[@]} == 0)); then
    say skip "$f: compose config (no docker compose v2 plugin, no docker-compose v1)"
  else
    run "$f: ${compose[*]} ${files[*]} config -q" "${compose[@]}" "${files[@]}" config -q
  fi
done

# --- YAML ------------------------------------------------------------------------------
run "yamllint -s: docker-compose*.yml $K8S $PROM" yamllint -s docker-compose*.yml "$K8S" "$PROM"

# --- deploy/kubernetes -----------------------------------------------------------------
mapfile -t keda < <(grep -l '^apiVersion: keda\.sh/' "$K8S"/*.yaml)
mapfile -t core < <(grep -L '^apiVersion: keda\.sh/' "$K8S"/*.yaml | grep -v /kustomization.yaml)
run "kubernetes-validate --strict -k 1.30.0: ${core[*]##*/}" \
  "$VENV/bin/kubernetes-validate" --strict -k 1.30.0 --quiet "${core[@]}"
run "kubectl kustomize $K8S" kubectl kustomize "$K8S"
PY="$VENV/bin/python"  # has PyYAML, a dependency of kubernetes-validate
if [[ ! -x "$PY" ]]; then say FAIL "$K8S: $PY missing (run scripts/install-check-tools.sh)"; else
  while IFS=$'\t' read -r status msg; do
    [[ "$status" == ok || "$status" == FAIL ]] || msg="$status $msg" status=FAIL
    say "$status" "$msg"
  done < <("$PY" - "$K8S" "${keda[@]}" 2>&1 <<'PY'
import glob, os, re, sys, yaml
from cloudcoil.models.keda import v1alpha1
k8s, keda = sys.argv[1], sys.argv[2:]
def say(errs, msg): print(f"FAIL\t{msg}: {'; '.join(errs)}" if errs else f"ok\t{msg}")
for path in keda:
    errs = []
    for doc in filter(None, yaml.safe_load_all(open(path))):
        try:  # extra="forbid": a field KEDA does not know is an error too
            getattr(v1alpha1, doc["kind"]).model_validate(doc, extra="forbid")
        except Exception as e:
            errs.append(" ".join(re.sub(r"For further information.*", "", str(e)).split()))
    say(errs, f"{path}: KEDA CRD models (cloudcoil-models-keda, unknown fields refused)")
files = {os.path.basename(f) for f in glob.glob(f"{k8s}/*.yaml")}
files -= {"kustomization.yaml", "secret.example.yaml"}
listed = set(yaml.safe_load(open(f"{k8s}/kustomization.yaml"))["resources"])
say([f"lists {sorted(listed - files)}, misses {sorted(files - listed)}"] if listed != files else [],
    f"{k8s}/kustomization.yaml lists every manifest but the Secret template")
values = {k: str(v) for d in yaml.safe_load_all(open(f"{k8s}/secret.example.yaml")) if d
          for k, v in {**(d.get("stringData") or {}), **(d.get("data") or {})}.items()}
real = [k for k, v in values.items() if "CHANGE_ME" not in v]
say([f"values without CHANGE_ME: {real}"] if real else [] if values else ["no values"],
    f"{k8s}/secret.example.yaml holds CHANGE_ME placeholders only")
PY
  )
fi

# --- deploy/prometheus -----------------------------------------------------------------
rules=()
for f in "$PROM"/*.yaml; do [[ "$f" == *.test.yaml ]] || rules+=("$f"); done
run "promtool check rules ${rules[*]}" promtool check rules "${rules[@]}"
run "promtool test rules $PROM/*.test.yaml" promtool test rules "$PROM"/*.test.yaml

# --- deploy/grafana --------------------------------------------------------------------
for f in deploy/grafana/*.json; do
  run "$f: valid JSON (jq)" jq empty "$f"
  jq '[.. | objects | select(has("expr")) | .expr
      | gsub("\\$__rate_interval"; "5m") | gsub("\\$stage"; ".+")] | to_entries
      | {groups: [{name: "panels", rules: map({record: "panel_\(.key)", expr: .value})}]}' \
    "$f" >"$tmp/rules.yaml" 2>/dev/null &&
    run "$f: panel queries parse as PromQL (promtool)" promtool check rules "$tmp/rules.yaml"
done

if ((failed)); then echo "check-deploy: $failed checks FAILED"; exit 1; fi
echo "check-deploy: all checks ok"
