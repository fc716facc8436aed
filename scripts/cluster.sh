#!/usr/bin/env bash
# One job: the cluster of docker-compose.cluster.yml (3 RabbitMQ nodes, 3 etcd members) run
# natively on 127.0.0.1 from Debian's packages, for failover tests and trying faults by
# hand. It stays clear of a broker and an etcd on their default ports.
#
# Usage: scripts/cluster.sh COMMAND
#   up              install what is missing, start what does not run, wait until the rabbit
#                   nodes form one cluster and etcd is healthy; idempotent. Its last stdout
#                   line is the env line (AMQP_URL=... ETCD_ENDPOINTS=...)
#   down            kill every process of the cluster, remove its state
#   status          each node up, down, paused or starting (client port still closed); the
#                   running rabbit nodes, each quorum queue's leader, the etcd leader
#   kill NODE       SIGKILL the node, which stays down;   start NODE: start it again
#   pause NODE      SIGSTOP the node;                     resume NODE: SIGCONT it
#   leader etcd     the etcd leader (etcd-N);   leader QUEUE: quorum queue QUEUE's (rabbit-N)
#   pids rabbit|etcd  the server pids, comma-separated (scripts/bench.sh counts their CPU)
#   env             the env line
#   ctl rabbit-N TOOL ARGS...  a RabbitMQ CLI tool aimed at that node, e.g.
#                   ctl rabbit-2 rabbitmq-queues quorum_status QUEUE
# NODE: rabbit-1|rabbit-2|rabbit-3|etcd-1|etcd-2|etcd-3.
#
# rabbit-N is Erlang node hpcN@localhost, AMQP 127.0.0.1:568N, with a private epmd on
# 127.0.0.1:4371. The nodes form one cluster as the compose file's do: classic_config peer
# discovery in their config, the first node started before the others. etcd-N (started by
# scripts/etcd.sh) listens on 240N, its peers on 241N. State, logs and a pid file per
# process under .data/cluster/; each process leads a session of its own, and signals go to
# its whole process group.
#
# Measured on a 2-core machine: up from nothing about 22 s, down under a second, start of
# a killed rabbit node about 5 s. A quorum queue declared without
# x-quorum-initial-group-size gets a member on each node. After `kill` of its leader a new
# one is elected within about a second; after `pause` once the node counts as down, after
# net_ticktime (10 s here, CLUSTER_NET_TICKTIME). A node paused longer than that comes back
# into a partition that autoheal mends (its rabbit app restarts). etcd elects a new leader
# 1-3 s after its leader is lost.
set -euo pipefail
# Settings from the caller's shell must not point our nodes or CLI calls elsewhere.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(RABBITMQ_|ERL_|ETCD)' || true)

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$REPO/.data/cluster"
RMQ_BIN=/usr/lib/rabbitmq/bin
ETCD_ENDPOINTS="http://127.0.0.1:2401,http://127.0.0.1:2402,http://127.0.0.1:2403"
START_TIMEOUT="${CLUSTER_START_TIMEOUT:-90}"

# Every RabbitMQ server and CLI call: one HOME (so one Erlang cookie) and one env file.
RMQ_ENV=("HOME=$STATE/rabbit-home" "RABBITMQ_CONF_ENV_FILE=$STATE/rabbitmq-env.conf"
  ERL_EPMD_PORT=4371 ERL_EPMD_ADDRESS=127.0.0.1)

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*" && exit 1; }
print_env() {
  echo "AMQP_URL=amqp://guest:guest@127.0.0.1:5681/%2f,amqp://guest:guest@127.0.0.1:5682/%2f,amqp://guest:guest@127.0.0.1:5683/%2f ETCD_ENDPOINTS=$ETCD_ENDPOINTS"
}
check_node() { [[ "${1:-}" =~ ^(rabbit|etcd)-[123]$ ]] || die "unknown node '${1:-}': use rabbit-1..3 or etcd-1..3"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
client_port() { [[ "$1" == rabbit-* ]] && echo "568${1#*-}" || echo "240${1#*-}"; }
# hpc2@localhost,hpc1@localhost -> rabbit-1,rabbit-2
rabbit_names() { tr ',' '\n' <<<"$1" | sed -nE 's/^hpc([0-9])@.*/rabbit-\1/p' | sort | paste -sd, -; }

# "PID STATE" of a node (or epmd) whose session leader still runs (a zombie does not).
alive() {
  local pid stat state sid
  pid="$(cat "$STATE/$1.pid" 2>/dev/null)" && stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  read -r state _ _ sid _ <<<"${stat##*) }"
  [[ "$state" != Z && "$sid" == "$pid" ]] && echo "$pid $state"
}
node_state() { # up|paused|starting|down
  local pid state
  read -r pid state < <(alive "$1") || { echo down && return; }
  [[ "$state" == T ]] && echo paused && return
  port_open "$(client_port "$1")" && echo up || echo starting
}
# spawn NAME COMMAND...: run COMMAND as the leader of a new session, its id in NAME.pid.
spawn() {
  local name="$1"
  shift
  # shellcheck disable=SC2016 # $$ and $@ are the inner bash's
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$STATE/$name.pid" "$@" \
    >>"$STATE/$name.log" 2>&1 </dev/null 9>&- &
}

# --- RabbitMQ -----------------------------------------------------------------
# rmq NODE TOOL ARGS...: a CLI tool against rabbit-NODE, bounded in time.
rmq() {
  local i="$1" tool="$2"
  shift 2
  env "${RMQ_ENV[@]}" timeout "${CLI_TIMEOUT:-30}" "$RMQ_BIN/$tool" -n "hpc$i@localhost" "$@"
}

write_rabbit_config() {
  mkdir -p "$STATE/rabbit-home"
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/rabbit-home/.erlang.cookie")
  cat >"$STATE/rabbitmq.conf" <<EOF
# guest may log in from localhost only (the default)
loopback_users.guest = true
cluster_name = heat-pipeline-cluster
# As docker-compose.cluster.yml forms its cluster. A node with no peer running waits
# discovery_retry_limit x interval before it forms the cluster alone.
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = hpc1@localhost
cluster_formation.classic_config.nodes.2 = hpc2@localhost
cluster_formation.classic_config.nodes.3 = hpc3@localhost
cluster_formation.discovery_retry_limit = 2
cluster_formation.discovery_retry_interval = 500
# A node paused (SIGSTOP) longer than net_ticktime comes back into a partition;
# autoheal restarts the losing side, which then rejoins.
cluster_partition_handling = autoheal
EOF
  # quorum_cluster_size: the initial group size of a quorum queue declared without
  # x-quorum-initial-group-size (3.10 has no rabbitmq.conf key for it). net_ticktime: a
  # paused node counts as down after 0.75-1.25 x net_ticktime (Erlang's default 60 s).
  cat >"$STATE/advanced.config" <<EOF
[{rabbit, [{quorum_cluster_size, 3}]},
 {kernel, [{net_ticktime, ${CLUSTER_NET_TICKTIME:-10}}]}].
EOF
  echo '[].' >"$STATE/enabled_plugins"
  # Read by rabbitmq-server and the CLI tools; a node's name and port come from RMQ_ENV.
  cat >"$STATE/rabbitmq-env.conf" <<EOF
NODE_IP_ADDRESS=127.0.0.1
CONFIG_FILE=$STATE/rabbitmq.conf
ADVANCED_CONFIG_FILE=$STATE/advanced.config
ENABLED_PLUGINS_FILE=$STATE/enabled_plugins
MNESIA_BASE=$STATE/mnesia
LOG_BASE=$STATE/log
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} -kernel net_ticktime ${CLUSTER_NET_TICKTIME:-10}"
CTL_DIST_PORT_MIN=35781
CTL_DIST_PORT_MAX=35799
EOF
}

start_rabbit() {
  local i="$1"
  port_open "568$i" && die "port 568$i is taken by a process this script did not start"
  rm -f "$STATE/mnesia/hpc$i@localhost.pid"
  log "starting rabbit-$i (hpc$i@localhost, amqp 127.0.0.1:568$i)"
  # In the foreground: its sh wrapper stays the parent of beam.smp.
  spawn "rabbit-$i" env "${RMQ_ENV[@]}" "RABBITMQ_NODENAME=hpc$i@localhost" \
    "RABBITMQ_NODE_PORT=568$i" "$RMQ_BIN/rabbitmq-server"
}

wait_rabbit() {
  if ! CLI_TIMEOUT=$((START_TIMEOUT + 5)) rmq "$1" rabbitmqctl -q wait \
    "$STATE/mnesia/hpc$1@localhost.pid" --timeout "$START_TIMEOUT" >/dev/null 2>&1; then
    tail -n 20 "$STATE/rabbit-$1.log" "$STATE/log/hpc$1@localhost.log" >&2 2>/dev/null || true
    die "rabbit-$1 did not start (state and logs in $STATE)"
  fi
}

# The first rabbit node that is up, to ask questions.
live_rabbit() {
  local i
  for i in 1 2 3; do
    [[ "$(node_state "rabbit-$i")" == up ]] && echo "$i" && return
  done
  die "no rabbit node is up"
}
# quorum_queues NODE: name, leader, members of each quorum queue in vhost /, tab-separated.
quorum_queues() {
  rmq "$1" rabbitmqctl -q list_queues name type leader members --formatter json |
    jq -r '.[] | select(.type == "quorum") | [.name, .leader, (.members | join(","))] | @tsv'
}

# --- etcd ---------------------------------------------------------------------
start_etcd() {
  ETCD_NAME="etcd-$1" ETCD_DATA_DIR="$STATE/etcd-$1" ETCD_CLIENT_PORT="240$1" \
    ETCD_PEER_PORT="241$1" ETCD_INITIAL_CLUSTER_TOKEN=heat-pipeline-cluster \
    ETCD_INITIAL_CLUSTER="etcd-1=http://127.0.0.1:2411,etcd-2=http://127.0.0.1:2412,etcd-3=http://127.0.0.1:2413" \
    ETCD_START_TIMEOUT="$START_TIMEOUT" bash "$REPO/scripts/etcd.sh" start
}
etcd_leader() {
  # -w simple: ENDPOINT, ID, VERSION, DB SIZE, IS LEADER, ...
  ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" --dial-timeout=1s --command-timeout=2s \
    endpoint status -w simple 2>/dev/null |
    awk -F', ' '$5 == "true" { sub(/.*:240/, "etcd-", $1); print $1 }' | grep . || return 1
}

# --- commands -----------------------------------------------------------------
cmd_up() {
  local missing=() sudo=() pkg name pid _ i blank=() etcd_jobs=() job
  for pkg in rabbitmq-server etcd-server etcd-client jq curl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ "$(id -u)" == 0 ]] || sudo=(sudo)
  if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    "${sudo[@]}" apt-get update >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "${missing[@]}" >&2
  fi
  [[ -f "$STATE/rabbitmq-env.conf" ]] || write_rabbit_config
  for name in rabbit-1 rabbit-2 rabbit-3 etcd-1 etcd-2 etcd-3; do
    if read -r pid _ < <(alive "$name"); then kill -CONT -- "-$pid"; fi
  done
  alive epmd >/dev/null || spawn epmd epmd -port 4371 -address 127.0.0.1
  for i in 1 2 3; do
    alive "etcd-$i" >/dev/null && continue
    start_etcd "$i" &
    etcd_jobs+=($!)
  done
  # Nodes with data of their own come back together (each waits for the others); new
  # ones then start one at a time, each joining the nodes that run (as compose orders).
  for i in 1 2 3; do
    alive "rabbit-$i" >/dev/null && continue
    if [[ -d "$STATE/mnesia/hpc$i@localhost" ]]; then start_rabbit "$i"; else blank+=("$i"); fi
  done
  for i in 1 2 3; do [[ " ${blank[*]} " == *" $i "* ]] || wait_rabbit "$i"; done
  for i in "${blank[@]}"; do start_rabbit "$i" && wait_rabbit "$i"; done
  rmq 1 rabbitmqctl -q await_online_nodes 3 --timeout "$START_TIMEOUT" >&2 ||
    die "the rabbit nodes did not form one cluster"
  for job in "${etcd_jobs[@]}"; do wait "$job" || die "an etcd member did not start (logs in $STATE)"; done
  log "up after ${SECONDS}s: rabbit-1..3 clustered, etcd-1..3 healthy"
  print_env
}

cmd_down() {
  local file name pid _
  for file in "$STATE"/*.pid; do
    name="$(basename "$file" .pid)"
    read -r pid _ < <(alive "$name") || continue
    # The state goes, so nothing needs a clean stop.
    kill -KILL -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$name" >/dev/null || break; sleep 0.1; done
    ! alive "$name" >/dev/null || die "$name (pid $pid) is still running"
  done
  rm -rf "$STATE"
  log "down"
}

cmd_status() {
  local name i="" running
  for name in rabbit-1 rabbit-2 rabbit-3 etcd-1 etcd-2 etcd-3; do
    echo "$name $(node_state "$name") pid=$(alive "$name" | cut -d' ' -f1) port=$(client_port "$name")"
  done
  if i="$(live_rabbit 2>/dev/null)"; then
    # While a node is paused, this answers once the others count it down (net_ticktime).
    if running="$(CLI_TIMEOUT=15 rmq "$i" rabbitmq-diagnostics -q cluster_status --formatter json \
      --timeout 5 2>/dev/null | jq -r '.running_nodes | join(",")')"; then
      echo "rabbit nodes running (seen by rabbit-$i): $(rabbit_names "$running")"
    fi
  fi
  [[ -z "$i" ]] || quorum_queues "$i" | while IFS=$'\t' read -r queue leader members; do
    echo "queue $queue leader=$(rabbit_names "$leader") members=$(rabbit_names "$members")"
  done || true
  echo "etcd leader: $(etcd_leader || echo none)"
}

cmd_leader() {
  [[ -n "${1:-}" ]] || die "usage: leader etcd|QUEUE"
  if [[ "$1" == etcd ]]; then
    etcd_leader || die "no etcd leader"
    return
  fi
  local i leader
  i="$(live_rabbit)" || exit 1
  leader="$(quorum_queues "$i" | awk -F'\t' -v q="$1" '$1 == q { print $2 }')"
  [[ -n "$leader" ]] || die "no quorum queue '$1' with a leader"
  rabbit_names "$leader"
}

# signal SIG NODE: to the node's whole process group.
cmd_signal() {
  local pid _
  check_node "${2:-}"
  read -r pid _ < <(alive "$2") || die "$2 is not running"
  kill "-$1" -- "-$pid"
  log "$2 (pid $pid): SIG$1"
  if [[ "$1" == KILL ]]; then
    for _ in $(seq 50); do alive "$2" >/dev/null || break; sleep 0.1; done
  fi
}

cmd_start() {
  local state
  check_node "${1:-}"
  [[ -f "$STATE/rabbitmq-env.conf" ]] || die "no cluster state: run '$0 up' first"
  state="$(node_state "$1")"
  [[ "$state" == paused ]] && die "$1 is paused: use resume"
  [[ "$state" == down ]] || { log "$1 is already running" && return; }
  if [[ "$1" == rabbit-* ]]; then
    alive epmd >/dev/null || spawn epmd epmd -port 4371 -address 127.0.0.1
    start_rabbit "${1#*-}" && wait_rabbit "${1#*-}"
  else
    start_etcd "${1#*-}"
  fi
  log "$1 started"
}

cmd_pids() {
  case "${1:-}" in
    rabbit) awk 1 "$STATE"/mnesia/hpc[123]@localhost.pid ;; # beam.smp, written by rabbit
    etcd) awk 1 "$STATE"/etcd-[123].pid ;;
    *) die "usage: pids rabbit|etcd" ;;
  esac 2>/dev/null | paste -sd, -
}

cmd_ctl() {
  [[ "${1:-}" =~ ^rabbit-[123]$ && "${2:-}" == rabbitmq* && -x "$RMQ_BIN/${2:-}" ]] ||
    die "usage: ctl rabbit-N rabbitmq-TOOL [ARGS...]"
  local i="${1#*-}" tool="$2"
  shift 2
  CLI_TIMEOUT="${CLI_TIMEOUT:-120}" rmq "$i" "$tool" "$@"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  up | down | kill | pause | resume | start)
    # One state-changing command at a time.
    mkdir -p "$STATE"
    exec 9>"$REPO/.data/cluster.lock"
    flock 9
    ;;
esac
case "$cmd" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kill) cmd_signal KILL "$@" ;;
  pause) cmd_signal STOP "$@" ;;
  resume) cmd_signal CONT "$@" ;;
  start) cmd_start "$@" ;;
  leader) cmd_leader "$@" ;;
  pids) cmd_pids "$@" ;;
  ctl) cmd_ctl "$@" ;;
  env) print_env ;;
  *) sed -n '6,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2 && exit 2 ;;
esac
