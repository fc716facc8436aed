#!/usr/bin/env bash
# Checks the deployment files as far as that is possible without a Docker engine or a
# Kubernetes cluster, one line per check, and exits non-zero if any check failed:
#   - docker-compose.yml: `docker-compose config -q` (Debian's docker-compose is installed
#     with apt-get if missing; failing that, a PyYAML parse only), and the stage services'
#     HTTP_ADDR, healthcheck and exposed (not published) port 9464;
#   - deploy/kubernetes/*.yaml: every document parses and has apiVersion, kind and
#     metadata.name; kustomization.yaml lists every manifest but the Secret template; the
#     Secret template holds placeholders only; `kubectl kustomize` builds (when kubectl is
#     installed);
#   - deploy/grafana/*.json: valid JSON with a non-empty `panels` list, every metric it
#     queries starts with heat_pipeline_ and is one the binary exports.
# PyYAML comes from python3-yaml (apt-get) when `import yaml` fails.
# scripts/test.sh runs this.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

checks=0
failed=0

# report ok|FAIL|skip MESSAGE
report() {
  local status="$1"
  shift
  case "$status" in
    ok | skip) checks=$((checks + 1)) ;;
    *) checks=$((checks + 1)) failed=$((failed + 1)) ;;
  esac
  printf 'check-deploy: %-4s %s\n' "$status" "$*"
}

# report_lines NAME COMMAND...: runs a check program that prints "ok|FAIL|skip<TAB>message"
# lines and reports each (prefixed with NAME when not empty).
# A program that fails without reporting a failure is reported as one.
report_lines() {
  local name="$1" out rc=0 status msg any_fail=0
  shift
  out="$("$@" 2>&1)" || rc=$?
  while IFS=$'\t' read -r status msg; do
    [[ -n "$status" ]] || continue
    if [[ "$status" != ok && "$status" != skip && "$status" != FAIL ]]; then
      msg="$status${msg:+ $msg}"
      status=FAIL
    fi
    [[ "$status" != FAIL ]] || any_fail=1
    report "$status" "${name:+$name: }$msg"
  done <<<"$out"
  if ((rc != 0 && any_fail == 0)); then
    report FAIL "${name:-check}: check program exited $rc"
  fi
}

one_line() {
  local s="$1"
  s="${s//$'\n'/ | }"
  printf '%s' "${s:0:400}"
}

apt_install() {
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || return 1
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  echo "check-deploy: installing $* with apt-get" >&2
  "${sudo[@]}" apt-get update -qq >&2 || return 1
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >&2
}

# A python3 that can import yaml. pyenv's python3 does not see Debian's python3-yaml,
# so Debian's own interpreter is tried too.
yaml_python() {
  local py
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' >/dev/null 2>&1; then
      echo "$py"
      return 0
    fi
  done
  return 1
}

# --- PyYAML --------------------------------------------------------------------------
PY=""
if PY="$(yaml_python)"; then
  :
elif apt_install python3-yaml && PY="$(yaml_python)"; then
  :
else
  PY=""
fi
if [[ -n "$PY" ]]; then
  report ok "PyYAML available ($PY)"
else
  report FAIL "PyYAML: 'import yaml' fails and python3-yaml could not be installed"
fi

# --- docker-compose.yml ---------------------------------------------------------------
compose_cmd=()
if command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
elif command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif apt_install docker-compose && command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
fi

if ((${#compose_cmd[@]})); then
  if out="$("${compose_cmd[@]}" -f docker-compose.yml config -q 2>&1)"; then
    report ok "docker-compose.yml: ${compose_cmd[*]} -f docker-compose.yml config -q"
  else
    report FAIL "docker-compose.yml: ${compose_cmd[*]} config -q: $(one_line "$out")"
  fi
elif [[ -n "$PY" ]]; then
  if out="$("$PY" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' docker-compose.yml 2>&1)"; then
    report ok "docker-compose.yml: parses as YAML (python yaml only: docker-compose is missing and could not be installed)"
  else
    report FAIL "docker-compose.yml: YAML parse (docker-compose missing): $(one_line "$out")"
  fi
else
  report FAIL "docker-compose.yml: neither docker-compose nor PyYAML to check it with"
fi

if [[ -n "$PY" ]]; then
  report_lines "docker-compose.yml" "$PY" - docker-compose.yml <<'PY'
import sys, yaml

doc = yaml.safe_load(open(sys.argv[1]))
services = (doc or {}).get("services") or {}
problems = []
for stage in ("capture", "normalize", "wrap"):
    svc = services.get(stage)
    if not isinstance(svc, dict):
        problems.append(f"no service {stage}")
        continue
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env if "=" in e)
    if env.get("HTTP_ADDR") != "0.0.0.0:9464":
        problems.append(f"{stage}: HTTP_ADDR is not 0.0.0.0:9464")
    test = (svc.get("healthcheck") or {}).get("test")
    if test != ["CMD", "/usr/local/bin/heat-pipeline", "healthcheck"]:
        problems.append(f"{stage}: healthcheck test is {test!r}")
    if "9464" not in [str(p) for p in svc.get("expose") or []]:
        problems.append(f"{stage}: 9464 not exposed")
    if svc.get("ports"):
        problems.append(f"{stage}: publishes host ports (breaks --scale)")
    deps = svc.get("depends_on") or {}
    for dep in ("rabbitmq", "etcd"):
        if not isinstance(deps, dict) or (deps.get(dep) or {}).get("condition") != "service_healthy":
            problems.append(f"{stage}: does not wait for a healthy {dep}")
if problems:
    print("FAIL\tstage services: " + "; ".join(problems))
else:
    print("ok\tstage services capture, normalize, wrap: HTTP_ADDR, healthcheck, expose 9464, no host ports, wait for healthy rabbitmq and etcd")
PY
fi

# --- deploy/kubernetes ----------------------------------------------------------------
K8S_DIR=deploy/kubernetes
mapfile -t k8s_files < <(find "$K8S_DIR" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
if ((${#k8s_files[@]} == 0)); then
  report FAIL "$K8S_DIR: no YAML files"
elif [[ -z "$PY" ]]; then
  report FAIL "$K8S_DIR: cannot parse ${#k8s_files[@]} YAML files without PyYAML"
else
  report_lines "" "$PY" - "$K8S_DIR" "${k8s_files[@]}" <<'PY'
import os, sys, yaml

k8s_dir, files = sys.argv[1], sys.argv[2:]
for path in files:
    try:
        docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
    except yaml.YAMLError as e:
        print(f"FAIL\t{path}: does not parse: {' '.join(str(e).split())}")
        continue
    if not docs:
        print(f"FAIL\t{path}: no documents")
        continue
    names, problems = [], []
    for i, d in enumerate(docs, 1):
        if not isinstance(d, dict):
            problems.append(f"document {i} is not a mapping")
            continue
        meta = d.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        missing = [f for f, v in (("apiVersion", d.get("apiVersion")), ("kind", d.get("kind")),
                                  ("metadata.name", name)) if not isinstance(v, str) or not v]
        if missing:
            problems.append(f"document {i} has no {', '.join(missing)}")
        else:
            names.append(f"{d['kind']}/{name}")
    if problems:
        print(f"FAIL\t{path}: {'; '.join(problems)}")
    else:
        print(f"ok\t{path}: {', '.join(names)}")

# kustomization.yaml: lists every manifest here except the Secret template, and only files
# that exist.
kust = os.path.join(k8s_dir, "kustomization.yaml")
template = "secret.example.yaml"
try:
    resources = (yaml.safe_load(open(kust)) or {}).get("resources") or []
    present = {os.path.basename(f) for f in files if os.path.dirname(f) == k8s_dir}
    expected = present - {"kustomization.yaml", template}
    problems = []
    if template in resources:
        problems.append(f"lists {template} (a template, never applied)")
    if missing := [r for r in resources if not os.path.exists(os.path.join(k8s_dir, r))]:
        problems.append(f"lists missing files {missing}")
    if unlisted := sorted(expected - set(resources)):
        problems.append(f"does not list {unlisted}")
    if problems:
        print(f"FAIL\t{kust}: {'; '.join(problems)}")
    else:
        print(f"ok\t{kust}: lists all {len(resources)} manifests, not {template}")
except (OSError, yaml.YAMLError) as e:
    print(f"FAIL\t{kust}: {' '.join(str(e).split())}")

# The Secret template must hold placeholders only: real values are never committed.
path = os.path.join(k8s_dir, template)
try:
    secrets = [d for d in yaml.safe_load_all(open(path)) if isinstance(d, dict) and d.get("kind") == "Secret"]
    values = {k: str(v) for d in secrets for k, v in {**(d.get("stringData") or {}), **(d.get("data") or {})}.items()}
    real = sorted(k for k, v in values.items() if "CHANGE_ME" not in v)
    if not secrets or not values:
        print(f"FAIL\t{path}: no Secret with values")
    elif real:
        print(f"FAIL\t{path}: values without a CHANGE_ME placeholder: {real} (never commit real secrets)")
    else:
        print(f"ok\t{path}: placeholders only ({', '.join(sorted(values))})")
except (OSError, yaml.YAMLError) as e:
    print(f"FAIL\t{path}: {' '.join(str(e).split())}")
PY
fi

if command -v kubectl >/dev/null 2>&1; then
  if out="$(kubectl kustomize "$K8S_DIR" 2>&1)"; then
    report ok "$K8S_DIR: kubectl kustomize builds $(grep -c '^kind:' <<<"$out") objects"
  else
    report FAIL "$K8S_DIR: kubectl kustomize: $(one_line "$out")"
  fi
else
  report skip "$K8S_DIR: kubectl kustomize (kubectl not installed)"
fi

# --- deploy/grafana -------------------------------------------------------------------
mapfile -t dashboards < <(find deploy/grafana -type f -name '*.json' 2>/dev/null | sort)
DASH_PY="${PY:-python3}"
if ((${#dashboards[@]} == 0)); then
  report FAIL "deploy/grafana: no dashboard JSON"
elif ! command -v "$DASH_PY" >/dev/null 2>&1; then
  report FAIL "deploy/grafana: no python3 to check ${#dashboards[@]} dashboards"
else
  report_lines "" "$DASH_PY" - "${dashboards[@]}" <<'PY'
import json, re, sys

# What `heat-pipeline run` exports (histograms also as _bucket, _sum, _count).
KNOWN = {
    "heat_pipeline_messages_total", "heat_pipeline_rejections_total",
    "heat_pipeline_retries_total", "heat_pipeline_processing_seconds",
    "heat_pipeline_etcd_request_seconds", "heat_pipeline_in_flight",
    "heat_pipeline_reconnects_total", "heat_pipeline_end_to_end_seconds",
    "heat_pipeline_ready",
}
HISTOGRAMS = {"heat_pipeline_processing_seconds", "heat_pipeline_etcd_request_seconds",
              "heat_pipeline_end_to_end_seconds"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
            "or", "unless", "offset", "inf", "nan", "start", "end"}


def metric_names(expr):
    """Metric names in a PromQL expression (with Grafana variables in it)."""
    names = set(re.findall(r'__name__\s*=~?\s*"([A-Za-z_:][\w:]*)"', expr))
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)      # label matchers (and ${var})
    e = re.sub(r"\[[^\]]*\]", " ", e)     # range selectors
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    for m in re.finditer(r"(?<![\w.$:])([A-Za-z_:][\w:]*)(\s*\()?", e):
        if not m.group(2) and m.group(1).lower() not in KEYWORDS:
            names.add(m.group(1))
    return names


def walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def panels(node):
    for p in node.get("panels") or []:
        yield p
        yield from panels(p)       # rows keep their panels inside


def known(name):
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in KNOWN or (base in HISTOGRAMS and base != name)


for path in sys.argv[1:]:
    try:
        dash = json.load(open(path))
    except (OSError, ValueError) as e:
        print(f"FAIL\t{path}: not valid JSON: {e}")
        continue
    ps = list(panels(dash)) if isinstance(dash, dict) else []
    if not ps:
        print(f"FAIL\t{path}: no panels")
        continue
    print(f"ok\t{path}: valid JSON, {len(ps)} panels, schemaVersion {dash.get('schemaVersion')}")

    exprs = [n["expr"] for n in walk(dash.get("panels")) if isinstance(n.get("expr"), str)]
    for var in (dash.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*)\)\s*", q, re.S)
        if m:
            if "," in m.group(1):
                exprs.append(m.group(1).rsplit(",", 1)[0])
            continue
        m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q, re.S)
        exprs.append(m.group(1) if m else q)
    names = set().union(*map(metric_names, exprs)) if exprs else set()
    if not names:
        print(f"FAIL\t{path}: no metric found in {len(exprs)} queries")
        continue
    bad_prefix = sorted(n for n in names if not n.startswith("heat_pipeline_"))
    unknown = sorted(n for n in names if n.startswith("heat_pipeline_") and not known(n))
    if bad_prefix:
        print(f"FAIL\t{path}: metrics without the heat_pipeline_ prefix: {bad_prefix}")
    elif unknown:
        print(f"FAIL\t{path}: metrics heat-pipeline does not export: {unknown}")
    else:
        print(f"ok\t{path}: {len(exprs)} queries use {len(names)} metrics, all heat_pipeline_ and exported")
PY
fi

# --------------------------------------------------------------------------------------
if ((failed)); then
  echo "check-deploy: $failed of $checks checks FAILED"
  exit 1
fi
echo "check-deploy: all $checks checks ok"
