#!/usr/bin/env bash
# A local 3-node RabbitMQ cluster and a 3-member etcd cluster on 127.0.0.1, from
# Debian's packages, without Docker, for failover tests. It stays clear of a
# broker and an etcd on their default ports (5672/25672/4369, 2379/2380).
#
# Usage: scripts/cluster.sh COMMAND
#   up              install missing packages, start all nodes, cluster them, wait
#                   until healthy; idempotent. Last stdout line: the env line.
#   down            stop every process of this cluster, remove .data/cluster/
#   status          one line per node: up, down, paused, or starting (process
#                   alive, client port still closed: booting, or a rabbit node
#                   whose app is stopped); pid, ports; then the rabbit nodes
#                   running as rabbit-1..3 see it, the leader of each quorum
#                   queue, the etcd leader
#   kill NODE       SIGKILL the node's process; it stays down
#   pause NODE      SIGSTOP it;  resume NODE: SIGCONT it
#   start NODE      start a killed node again on its own data (it rejoins)
#   leader etcd     print the etcd leader's member name (etcd-1..3)
#   leader QUEUE    print the rabbit node (rabbit-1..3) leading quorum queue QUEUE
#   env             print the env line
#   ctl rabbit-N TOOL ARGS...  run a RabbitMQ CLI tool against that node, e.g.
#                   ctl rabbit-2 rabbitmq-queues quorum_status QUEUE
# NODE is rabbit-1|rabbit-2|rabbit-3|etcd-1|etcd-2|etcd-3.
#
# Topology (state under .data/cluster/, logs there too):
#   rabbit-N  Erlang node hpcN@localhost, AMQP 127.0.0.1:568N, distribution 2568N,
#             a private epmd on 127.0.0.1:4371, no management plugin; its CLI
#             tools use distribution ports 35781-35799.
#   etcd-N    client http://127.0.0.1:240N, peer http://127.0.0.1:241N.
# Every process the script starts carries HPC_CLUSTER_MARK=<state dir> in its
# environment, which is how `down` finds them all (and nothing else).
#
# Behaviour worth knowing (measured on a 2-core machine):
#   up from nothing 12-27 s (nodes boot in parallel, then rabbit-2 and -3 join
#   rabbit-1 with stop_app/join_cluster/start_app); up when already up 0.4-0.6 s;
#   down 0.4 s (SIGKILL: the state is deleted anyway); start of a killed rabbit
#   node 4-5 s, of an etcd member 0.2-1 s.
#   A quorum queue declared without x-quorum-initial-group-size gets a member
#   on each node. After `kill` of its leader a new one is listed within ~1 s;
#   after `pause` only once the node counts as down: net_ticktime, 10 s here
#   (CLUSTER_NET_TICKTIME, read when a node's config is first written), so
#   8-13 s. A node paused longer than that comes back into a partition that
#   autoheal mends (its rabbit app restarts, about 2 s after resume).
#   etcd elects a new leader 1-3 s after its leader is killed or paused.
#   status, leader and env take no lock and answer in about 1 s even while a
#   node is paused (they read node-local state via rabbitmqctl eval).
#   Each rabbit node takes 130-150 MiB.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$REPO/.data"
STATE="$DATA/cluster"
LOCK_FILE="$DATA/cluster.lock"
RMQ_HOME="$STATE/rabbit-home" # one HOME, so one Erlang cookie for nodes and CLI
RMQ_BIN=/usr/lib/rabbitmq/bin
EPMD_PORT=4371
CTL_DIST_MIN=35781
CTL_DIST_MAX=35799
ETCD_BIN="${ETCD_BIN:-/usr/bin/etcd}"
ETCDCTL_BIN="${ETCDCTL_BIN:-/usr/bin/etcdctl}"
START_TIMEOUT="${CLUSTER_START_TIMEOUT:-90}"
STOP_GRACE="${CLUSTER_STOP_GRACE:-0}"
NET_TICKTIME="${CLUSTER_NET_TICKTIME:-10}"
MARK="HPC_CLUSTER_MARK=$STATE"
ETCD_CLUSTER="etcd-1=http://127.0.0.1:2411,etcd-2=http://127.0.0.1:2412,etcd-3=http://127.0.0.1:2413"
ETCD_ENDPOINTS="http://127.0.0.1:2401,http://127.0.0.1:2402,http://127.0.0.1:2403"

# Settings from the caller's shell must not point our nodes or CLI calls at
# another broker.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(RABBITMQ_|ERL_EPMD_|ERL_FLAGS$|ERL_AFLAGS$|ERL_ZFLAGS$|ETCDCTL_)' || true)
export ETCDCTL_API=3

case "$(uname -m)" in
  aarch64 | arm64) export ETCD_UNSUPPORTED_ARCH=arm64 ;;
esac

log() { echo "cluster.sh: $*" >&2; }
die() {
  log "$*"
  exit 1
}

print_env() {
  echo "AMQP_URL=amqp://guest:guest@127.0.0.1:5681/%2f,amqp://guest:guest@127.0.0.1:5682/%2f,amqp://guest:guest@127.0.0.1:5683/%2f ETCD_ENDPOINTS=$ETCD_ENDPOINTS"
}

# --- naming -------------------------------------------------------------------
node_index() { echo "${1##*-}"; }
rabbit_dir() { echo "$STATE/rabbit-$1"; }
rabbit_erl_node() { echo "hpc$1@localhost"; }
etcd_dir() { echo "$STATE/etcd-$1"; }
check_node() {
  case "${1:-}" in
    rabbit-[123] | etcd-[123]) ;;
    *) die "unknown node '${1:-}': use rabbit-1|rabbit-2|rabbit-3|etcd-1|etcd-2|etcd-3" ;;
  esac
}
# hpc2@localhost -> rabbit-2
rabbit_name_of() { sed -E 's/^hpc([0-9]+)@.*/rabbit-\1/' <<<"$1"; }
# hpc2@localhost,hpc1@localhost -> rabbit-1,rabbit-2
rabbit_names() { tr ',' '\n' <<<"$1" | grep . | sed -E 's/^hpc([0-9]+)@.*/rabbit-\1/' | sort | paste -sd, -; }

# --- processes ----------------------------------------------------------------
# Pids whose environment holds exactly the entry $1.
pids_with_env() {
  grep -lzxF -- "$1" /proc/[0-9]*/environ 2>/dev/null | sed -E 's#^/proc/([0-9]+)/environ$#\1#' |
    grep -vx -e "$$" -e "${BASHPID:-$$}" || true
}
# The main OS process of a node (beam.smp or etcd), if alive.
node_pid() {
  local name="$1" comm pid
  case "$name" in rabbit-*) comm=beam.smp ;; etcd-*) comm=etcd ;; esac
  for pid in $(pids_with_env "HPC_CLUSTER_NODE=$STATE/$name"); do
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]] || continue
    # A zombie is not a node.
    [[ "$(proc_state "$pid")" == Z ]] && continue
    echo "$pid"
    return 0
  done
  return 1
}
proc_state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- RabbitMQ -----------------------------------------------------------------
# The environment of node I's server and CLI tools, into the array RMQ_ENV.
rmq_env() {
  RMQ_ENV=("HOME=$RMQ_HOME" "RABBITMQ_CONF_ENV_FILE=$(rabbit_dir "$1")/rabbitmq-env.conf"
    "ERL_EPMD_PORT=$EPMD_PORT" "ERL_EPMD_ADDRESS=127.0.0.1" "$MARK")
}
# rmq_cli I TOOL ARGS...: run a CLI tool against node I, bounded in time.
rmq_cli() {
  local i="$1" tool="$2" RMQ_ENV
  shift 2
  rmq_env "$i"
  env "${RMQ_ENV[@]}" timeout "${CLI_TIMEOUT:-30}" "$RMQ_BIN/$tool" -n "$(rabbit_erl_node "$i")" "$@"
}

write_rabbit_config() {
  local i="$1" d
  d="$(rabbit_dir "$i")"
  mkdir -p "$d/mnesia" "$d/log"
  cat >"$d/rabbitmq.conf" <<EOF
# rabbit-$i of scripts/cluster.sh
listeners.tcp.1 = 127.0.0.1:568$i
# guest may log in from localhost only (the default)
loopback_users.guest = true
cluster_name = heat-pipeline-cluster
# A node that was paused (SIGSTOP) longer than net_ticktime comes back into a
# partition that pause_minority does not heal (it reconnects before it counts
# itself a minority); autoheal restarts the losing side, which then rejoins.
cluster_partition_handling = autoheal
EOF
  # quorum_cluster_size is the initial group size of a quorum queue declared
  # without x-quorum-initial-group-size (3.10 has no rabbitmq.conf key for it;
  # 3 is also its default): every queue gets a member on each of the 3 nodes.
  # net_ticktime: a paused node (and a quorum queue leader on it) counts as down
  # only after 0.75-1.25 x net_ticktime; Erlang's default of 60 s is long for tests.
  cat >"$d/advanced.config" <<EOF
[{rabbit, [{quorum_cluster_size, 3}]},
 {kernel, [{net_ticktime, $NET_TICKTIME}]}].
EOF
  echo '[].' >"$d/enabled_plugins"
  cat >"$d/rabbitmq-env.conf" <<EOF
# rabbit-$i of scripts/cluster.sh (read by rabbitmq-server and the CLI tools)
NODENAME=$(rabbit_erl_node "$i")
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=568$i
DIST_PORT=2568$i
CONFIG_FILE=$d/rabbitmq.conf
ADVANCED_CONFIG_FILE=$d/advanced.config
ENABLED_PLUGINS_FILE=$d/enabled_plugins
MNESIA_BASE=$d/mnesia
LOG_BASE=$d/log
PID_FILE=$d/rabbit.pid
PLUGINS_EXPAND_DIR=$d/plugins-expand
FEATURE_FLAGS_FILE=$d/feature_flags
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} -kernel net_ticktime $NET_TICKTIME"
CTL_DIST_PORT_MIN=$CTL_DIST_MIN
CTL_DIST_PORT_MAX=$CTL_DIST_MAX
ERL_EPMD_PORT=$EPMD_PORT
ERL_EPMD_ADDRESS=127.0.0.1
EOF
}

ensure_epmd() {
  local p
  for p in $(pids_with_env "$MARK"); do
    [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == epmd ]] && return 0
  done
  if port_open "$EPMD_PORT"; then
    die "port $EPMD_PORT (epmd) is taken by a process this script did not start"
  fi
  env "$MARK" epmd -daemon -port "$EPMD_PORT" -address 127.0.0.1 9>&-
}

start_rabbit() {
  local i="$1" d RMQ_ENV
  d="$(rabbit_dir "$i")"
  rmq_env "$i"
  [[ -f "$d/rabbitmq-env.conf" ]] || write_rabbit_config "$i"
  if port_open "568$i" || port_open "2568$i"; then
    die "port 568$i or 2568$i is taken by a process this script did not start"
  fi
  rm -f "$d/rabbit.pid"
  log "starting rabbit-$i ($(rabbit_erl_node "$i"), amqp 127.0.0.1:568$i)"
  # Foreground rabbitmq-server in its own session: the sh wrapper stays as the
  # parent of beam.smp and turns SIGTERM into a clean stop.
  setsid nohup env "${RMQ_ENV[@]}" "HPC_CLUSTER_NODE=$STATE/rabbit-$i" \
    "$RMQ_BIN/rabbitmq-server" >>"$d/log/console.log" 2>&1 </dev/null 9>&- &
}

wait_rabbit() {
  local i="$1" d
  d="$(rabbit_dir "$i")"
  if ! CLI_TIMEOUT=$((START_TIMEOUT + 5)) rmq_cli "$i" rabbitmqctl -q wait "$d/rabbit.pid" -t "$START_TIMEOUT" >/dev/null 2>&1; then
    log "rabbit-$i did not start; last lines of its logs:"
    tail -n 20 "$d/log/console.log" "$d/log/$(rabbit_erl_node "$i").log" >&2 2>/dev/null || true
    return 1
  fi
}

# What node I knows from its own database, without asking the other nodes (so
# it answers at once while one of them is paused; cluster_status and
# list_queues wait for it). Tab-separated lines:
#   members  NODE,NODE,...            cluster members
#   running  NODE,NODE,...            members it sees running
#   queue    VHOST  NAME  LEADER  NODE,NODE,...   one per quorum queue
RMQ_INFO_EVAL='J = fun(Ns) -> lists:join(",", [atom_to_list(N) || N <- Ns]) end,
io:format("members\t~s~n", [J(rabbit_mnesia:cluster_nodes(all))]),
io:format("running\t~s~n", [J(rabbit_mnesia:cluster_nodes(running))]),
[io:format("queue\t~ts\t~ts\t~s\t~s~n",
   [element(2, amqqueue:get_name(Q)), element(4, amqqueue:get_name(Q)),
    element(2, amqqueue:get_pid(Q)), J(rabbit_amqqueue:get_quorum_nodes(Q))])
 || Q <- rabbit_amqqueue:list(), amqqueue:get_type(Q) =:= rabbit_quorum_queue],
ok.'
rabbit_info() { CLI_TIMEOUT=10 rmq_cli "$1" rabbitmqctl -q eval "$RMQ_INFO_EVAL" 2>/dev/null || true; }
# Running nodes as seen by node I, one per line (hpcN@localhost).
running_nodes() { rabbit_info "$1" | awk -F'\t' '$1 == "running" { print $2 }' | tr ',' '\n' | grep . || true; }
# All member nodes as seen by node I.
member_nodes() { rabbit_info "$1" | awk -F'\t' '$1 == "members" { print $2 }' | tr ',' '\n' | grep . || true; }

join_rabbit() {
  local i="$1" seed
  seed="$(rabbit_erl_node 1)"
  if member_nodes "$i" | grep -qx "$seed"; then
    return 0
  fi
  log "joining rabbit-$i to rabbit-1"
  rmq_cli "$i" rabbitmqctl -q stop_app >/dev/null
  rmq_cli "$i" rabbitmqctl -q join_cluster "$seed" >/dev/null
  rmq_cli "$i" rabbitmqctl -q start_app >/dev/null
}

# --- etcd ---------------------------------------------------------------------
start_etcd() {
  local i="$1" d
  d="$(etcd_dir "$i")"
  mkdir -p "$d/data" && chmod 700 "$d/data"
  if port_open "240$i" || port_open "241$i"; then
    die "port 240$i or 241$i is taken by a process this script did not start"
  fi
  log "starting etcd-$i (client http://127.0.0.1:240$i)"
  # On a data dir that already holds a member, the --initial-* flags are ignored
  # and the member comes back with its own identity.
  setsid nohup env "$MARK" "HPC_CLUSTER_NODE=$STATE/etcd-$i" "$ETCD_BIN" \
    --name "etcd-$i" \
    --data-dir "$d/data" \
    --listen-client-urls "http://127.0.0.1:240$i" \
    --advertise-client-urls "http://127.0.0.1:240$i" \
    --listen-peer-urls "http://127.0.0.1:241$i" \
    --initial-advertise-peer-urls "http://127.0.0.1:241$i" \
    --initial-cluster "$ETCD_CLUSTER" \
    --initial-cluster-token heat-pipeline-cluster \
    --initial-cluster-state new \
    --auto-compaction-mode periodic --auto-compaction-retention 10m \
    >>"$d/etcd.log" 2>&1 </dev/null 9>&- &
}

etcdctl_() { "$ETCDCTL_BIN" --dial-timeout=1s --command-timeout=2s "$@"; }

etcd_healthy() { etcdctl_ --endpoints="http://127.0.0.1:240$1" endpoint health >/dev/null 2>&1; }

wait_etcd() {
  local i="$1" deadline=$((SECONDS + START_TIMEOUT))
  until etcd_healthy "$i"; do
    if ! node_pid "etcd-$i" >/dev/null; then
      log "etcd-$i exited during startup; last log lines:"
      tail -n 20 "$(etcd_dir "$i")/etcd.log" >&2 || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "etcd-$i not healthy after ${START_TIMEOUT}s; see $(etcd_dir "$i")/etcd.log"
      return 1
    fi
    sleep 0.3
  done
}

# Endpoints of the etcd members that run and are not paused.
live_etcd_endpoints() {
  local i pid eps=()
  for i in 1 2 3; do
    pid="$(node_pid "etcd-$i")" || continue
    [[ "$(proc_state "$pid")" == T ]] && continue
    eps+=("http://127.0.0.1:240$i")
  done
  (IFS=,; echo "${eps[*]}")
}

etcd_leader() {
  local eps
  eps="$(live_etcd_endpoints)"
  [[ -n "$eps" ]] || return 1
  # -w simple: ENDPOINT, ID, VERSION, DB SIZE, IS LEADER, ...
  etcdctl_ --endpoints="$eps" endpoint status -w simple 2>/dev/null |
    awk -F', ' '$5 == "true" { n = $1; sub(/.*:240/, "etcd-", n); print n }' | grep .
}

# --- helpers for commands -----------------------------------------------------
node_state() { # prints up|paused|starting|down
  local name="$1" pid i
  if ! pid="$(node_pid "$name")"; then
    echo down
    return
  fi
  if [[ "$(proc_state "$pid")" == T ]]; then
    echo paused
    return
  fi
  i="$(node_index "$name")"
  case "$name" in
    rabbit-*) port_open "568$i" && echo up || echo starting ;;
    etcd-*) port_open "240$i" && echo up || echo starting ;;
  esac
}

# The index of a running, unpaused rabbit node to ask questions.
live_rabbit() {
  local i
  for i in 1 2 3; do
    [[ "$(node_state "rabbit-$i")" == up ]] && {
      echo "$i"
      return 0
    }
  done
  return 1
}

ensure_packages() {
  local pkg missing=() sudo=()
  [[ "$(id -u)" == 0 ]] || sudo=(sudo)
  for pkg in rabbitmq-server etcd-server etcd-client; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  log "installing: ${missing[*]}"
  "${sudo[@]}" apt-get update >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

all_healthy() {
  local i n
  for i in 1 2 3; do
    [[ "$(node_state "rabbit-$i")" == up ]] || return 1
    [[ "$(node_state "etcd-$i")" == up ]] || return 1
  done
  n="$(running_nodes 1 | sort -u | wc -l)"
  ((n == 3)) || return 1
  etcdctl_ --endpoints="$ETCD_ENDPOINTS" endpoint health >/dev/null 2>&1
}

# --- commands -----------------------------------------------------------------
cmd_up() {
  local i n pids=() fail=0 pid
  ensure_packages
  mkdir -p "$STATE" "$RMQ_HOME"
  if all_healthy; then
    log "already up"
    print_env
    return 0
  fi
  # Paused nodes come back; `up` means all of them serve.
  for n in rabbit-1 rabbit-2 rabbit-3 etcd-1 etcd-2 etcd-3; do
    if pid="$(node_pid "$n")" && [[ "$(proc_state "$pid")" == T ]]; then
      log "resuming paused $n"
      kill -CONT "$pid"
    fi
  done
  if [[ ! -f "$RMQ_HOME/.erlang.cookie" ]]; then
    (umask 077 && head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 >"$RMQ_HOME/.erlang.cookie")
    chmod 400 "$RMQ_HOME/.erlang.cookie"
  fi
  ensure_epmd
  local alive=()
  for i in 1 2 3; do
    node_pid "etcd-$i" >/dev/null || start_etcd "$i"
    if node_pid "rabbit-$i" >/dev/null; then alive+=("$i"); else start_rabbit "$i"; fi
  done
  # A node whose VM runs with its rabbit app stopped (an autoheal that never
  # finished, or a stop_app by hand) gets its app started again.
  for i in "${alive[@]}"; do
    [[ "$(node_state "rabbit-$i")" == up ]] && continue
    sleep 5 # it may just be restarting (autoheal takes about 2 s)
    [[ "$(node_state "rabbit-$i")" == up ]] && continue
    log "rabbit-$i runs with its app stopped: start_app"
    rmq_cli "$i" rabbitmqctl -q start_app >/dev/null || true
  done
  for i in 1 2 3; do
    wait_rabbit "$i" &
    pids+=($!)
    wait_etcd "$i" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || fail=1; done
  ((fail == 0)) || die "start-up failed (state and logs in $STATE)"
  log "all nodes started after ${SECONDS}s"
  join_rabbit 2
  join_rabbit 3
  local deadline=$((SECONDS + START_TIMEOUT))
  until [[ "$(running_nodes 1 | sort -u | wc -l)" == 3 ]]; do
    ((SECONDS < deadline)) || die "the 3 rabbit nodes did not form one cluster"
    sleep 0.5
  done
  etcdctl_ --endpoints="$ETCD_ENDPOINTS" endpoint health >/dev/null 2>&1 ||
    die "etcd endpoints not all healthy"
  log "up after ${SECONDS}s: rabbit-1..3 clustered, etcd-1..3 healthy"
  print_env
}

cmd_down() {
  local pids p deadline
  pids="$(pids_with_env "$MARK")"
  if [[ -n "$pids" ]]; then
    log "stopping $(wc -w <<<"$pids") processes"
    # The state is thrown away, so by default nothing needs a clean stop:
    # SIGKILL at once (CLUSTER_STOP_GRACE=N gives N seconds after SIGTERM).
    # A paused process would hold SIGTERM until continued.
    for p in $pids; do kill -CONT "$p" 2>/dev/null || true; done
    ((STOP_GRACE == 0)) || for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    deadline=$((SECONDS + STOP_GRACE))
    while pids="$(pids_with_env "$MARK")" && [[ -n "$pids" ]]; do
      if ((SECONDS >= deadline)); then
        ((STOP_GRACE == 0)) || log "killing what did not stop in ${STOP_GRACE}s"
        for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
        sleep 0.3
        break
      fi
      sleep 0.2
    done
  fi
  rm -rf "$STATE"
  pids="$(pids_with_env "$MARK")"
  [[ -z "$pids" ]] || die "processes left behind: $pids"
  log "down"
}

cmd_status() {
  local i st pid ls q kind a b c d
  for i in 1 2 3; do
    st="$(node_state "rabbit-$i")"
    pid="$(node_pid "rabbit-$i" || echo -)"
    echo "rabbit-$i $st pid=$pid node=$(rabbit_erl_node "$i") amqp=127.0.0.1:568$i dist=2568$i"
  done
  for i in 1 2 3; do
    st="$(node_state "etcd-$i")"
    pid="$(node_pid "etcd-$i" || echo -)"
    echo "etcd-$i $st pid=$pid client=http://127.0.0.1:240$i peer=http://127.0.0.1:241$i"
  done
  if ls="$(live_rabbit)"; then
    rabbit_info "$ls" | while IFS=$'\t' read -r kind a b c d; do
      case "$kind" in
        running) echo "rabbit cluster (seen by rabbit-$ls): running $(rabbit_names "$a")" ;;
        queue)
          [[ "$a" == / ]] && q="$b" || q="$a:$b"
          echo "queue $q leader=$(rabbit_name_of "$c") members=$(rabbit_names "$d")"
          ;;
      esac
    done
  fi
  echo "etcd leader: $(etcd_leader || echo none)"
}

cmd_leader() {
  local what="${1:-}" i leader
  [[ -n "$what" ]] || die "usage: leader etcd|QUEUE"
  if [[ "$what" == etcd ]]; then
    etcd_leader || die "no etcd leader"
    return
  fi
  i="$(live_rabbit)" || die "no rabbit node is up"
  leader="$(rabbit_info "$i" | awk -F'\t' -v q="$what" '$1 == "queue" && $2 == "/" && $3 == q { print $4 }')"
  [[ "$leader" == hpc* ]] || die "no quorum queue '$what' with a leader"
  rabbit_name_of "$leader"
}

signal_node() {
  local sig="$1" name="$2" pid
  check_node "$name"
  pid="$(node_pid "$name")" || die "$name is not running"
  kill "-$sig" "$pid"
  log "$name (pid $pid): SIG$sig"
}

cmd_kill() {
  local name="${1:-}"
  signal_node KILL "$name"
  # Wait until the process is gone, so a test can rely on it.
  for _ in $(seq 1 50); do
    node_pid "$name" >/dev/null || break
    sleep 0.1
  done
}

cmd_start() {
  local name="${1:-}" i
  check_node "$name"
  i="$(node_index "$name")"
  [[ -d "$STATE" ]] || die "no cluster state: run '$0 up' first"
  if pid="$(node_pid "$name")"; then
    [[ "$(proc_state "$pid")" == T ]] && die "$name is paused: use resume"
    log "$name is already running (pid $pid)"
    return 0
  fi
  case "$name" in
    rabbit-*)
      ensure_epmd
      start_rabbit "$i"
      wait_rabbit "$i" || die "$name did not start"
      ;;
    etcd-*)
      start_etcd "$i"
      wait_etcd "$i" || die "$name did not start"
      ;;
  esac
  log "$name started (pid $(node_pid "$name"))"
}

# ctl rabbit-N TOOL ARGS...: a RabbitMQ CLI tool (rabbitmqctl, rabbitmq-queues,
# rabbitmq-diagnostics...) aimed at that node, with the cluster's cookie and epmd.
cmd_ctl() {
  local name="${1:-}" tool="${2:-}"
  [[ "$name" == rabbit-[123] && -n "$tool" ]] || die "usage: ctl rabbit-N TOOL [ARGS...]"
  shift 2
  [[ -x "$RMQ_BIN/$tool" && "$tool" == rabbitmq* ]] || die "no RabbitMQ CLI tool '$tool' in $RMQ_BIN"
  CLI_TIMEOUT="${CLI_TIMEOUT:-120}" rmq_cli "$(node_index "$name")" "$tool" "$@"
}

usage() {
  sed -n '6,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift
case "$cmd" in
  env | leader | status | ctl) ;;
  *)
    # One state-changing command at a time.
    mkdir -p "$DATA"
    exec 9>"$LOCK_FILE"
    flock 9
    ;;
esac
case "$cmd" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kill) cmd_kill "$@" ;;
  pause) signal_node STOP "${1:-}" ;;
  resume) signal_node CONT "${1:-}" ;;
  start) cmd_start "$@" ;;
  ctl) cmd_ctl "$@" ;;
  leader) cmd_leader "$@" ;;
  env) print_env ;;
  *) usage ;;
esac
