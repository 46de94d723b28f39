#!/usr/bin/env bash
# An opt-in, real Elasticsearch 9 node for the storage door's contract tests (`make test-elasticsearch`).
# It is NOT part of the stack (`infra/stack.sh`): the stack's engine is OpenSearch on :9200.
#
#   bash infra/elasticsearch.sh up|start     # fetch, unpack, start on 127.0.0.1:9201, wait for health
#   bash infra/elasticsearch.sh down|stop    # stop the node this script started
#   bash infra/elasticsearch.sh restart
#   bash infra/elasticsearch.sh status       # exit 3 when nothing healthy answers on the port
#
# What runs: Maven Central's `org.elasticsearch.distribution.integ-test-zip:elasticsearch` (the server
# Elasticsearch's own build uses for REST tests). It is a real Elasticsearch, but with only the modules
# apm, transport-netty4, x-pack-core and x-pack-security: no data streams module (no `_data_stream`
# API), no ILM, no painless, no analysis-common. Security is switched off (plain HTTP, no auth).
#
# Elasticsearch refuses to run as root, so it runs as the system user ES_USER (created when
# missing; needs root, as everything on our machines runs). It needs Java 21+ and the zip bundles no
# JDK: ES_JAVA_HOME, else the newest JDK >= 21 under /usr/lib/jvm (the machine's Temurin).
# The zip is unpacked in .cache/elasticsearch/ (git-ignored); config, data, logs and the pid file live
# in .stack/elasticsearch/ (owned by ES_USER). `up` is idempotent: a healthy node on the port is reused.
#
# Environment: ES_VERSION (9.1.5), ES_PORT (9201), ES_TRANSPORT_PORT (ES_PORT + 100), ES_HEAP (512m),
# ES_USER (panopticon-es), ES_JAVA_HOME, STACK_DIR (.stack), STACK_CACHE (.cache).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${STACK_CACHE:-$ROOT/.cache}/elasticsearch"
DIR="${STACK_DIR:-$ROOT/.stack}/elasticsearch"
HOST=127.0.0.1
ES_VERSION="${ES_VERSION:-9.1.5}"
ES_PORT="${ES_PORT:-9201}"
ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-$((ES_PORT + 100))}"
ES_HEAP="${ES_HEAP:-512m}"
ES_USER="${ES_USER:-panopticon-es}"
ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip"
HOME_DIR="$CACHE/elasticsearch-$ES_VERSION"
PIDFILE="$DIR/elasticsearch.pid"
LOG="$DIR/elasticsearch.log"  # launcher output; the server's own logs are in $DIR/logs/
START_TIMEOUT=120
STOP_TIMEOUT=30

say() { printf '%s\n' "$*"; }
warn() { printf 'elasticsearch.sh: %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

fail_start() {
  warn "$1; last lines of $LOG and $DIR/logs/panopticon-es.log:"
  tail -n 20 "$LOG" >&2 || true
  tail -n 40 "$DIR/logs/panopticon-es.log" >&2 2>/dev/null || true
  exit 1
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

healthy() {
  local body
  body=$(curl -fsS -m 10 "http://$HOST:$ES_PORT/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null) &&
    [[ $body == *'"status":"green"'* || $body == *'"status":"yellow"'* ]]
}

# The pid of the server this script started, if it is still alive (its command line names our home).
our_pid() {
  local pid
  [[ -s $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  if [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-Des.path.home=$HOME_DIR"; then
    echo "$pid"
    return 0
  fi
  rm -f "$PIDFILE"
  return 1
}

# ES_JAVA_HOME, else the newest JDK >= 21 in /usr/lib/jvm.
java_home() {
  if [[ -n ${ES_JAVA_HOME:-} ]]; then
    [[ -x $ES_JAVA_HOME/bin/java ]] || die "ES_JAVA_HOME=$ES_JAVA_HOME has no bin/java"
    echo "$ES_JAVA_HOME"
    return 0
  fi
  local best="" best_major=0 jdk major
  for jdk in /usr/lib/jvm/*/; do
    jdk=${jdk%/}
    [[ -x $jdk/bin/java && ! -L $jdk ]] || continue
    major=$("$jdk/bin/java" -XshowSettings:properties -version 2>&1 |
      sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p')
    [[ $major =~ ^[0-9]+$ ]] && ((major >= 21 && major > best_major)) && { best=$jdk; best_major=$major; }
  done
  [[ -n $best ]] || die "Elasticsearch $ES_VERSION needs Java 21 or newer: set ES_JAVA_HOME (none found in /usr/lib/jvm)"
  echo "$best"
}

ensure_user() {
  id -u "$ES_USER" >/dev/null 2>&1 && return 0
  [[ $(id -u) -eq 0 ]] || die "user $ES_USER does not exist; create it as root: useradd -r -M -s /usr/sbin/nologin $ES_USER"
  warn "creating system user $ES_USER (Elasticsearch refuses to run as root)"
  useradd -r -M -s /usr/sbin/nologin "$ES_USER"
}

# Fetches the zip with Maven and unpacks it into .cache/elasticsearch/elasticsearch-<version>.
fetch() {
  [[ -x $HOME_DIR/bin/elasticsearch && -f $HOME_DIR/.unpacked ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  mkdir -p "$CACHE"
  warn "fetching $ARTIFACT with Maven into ${CACHE#"$ROOT"/}"
  rm -rf "$HOME_DIR"
  # Run in the cache: with no pom, the plugin writes its marker under a literal "${project.basedir}"
  # folder of the current directory (removed below; .unpacked is our marker).
  if ! (cd "$CACHE" && mvn -q -B dependency:unpack -Dartifact="$ARTIFACT" -DoutputDirectory="$CACHE" \
    -Dmdep.overWriteReleases=true) >"$CACHE/mvn.log" 2>&1; then
    tail -n 30 "$CACHE/mvn.log" >&2
    die "Maven could not fetch $ARTIFACT (full output: $CACHE/mvn.log)"
  fi
  [[ -x $HOME_DIR/bin/elasticsearch ]] || die "the zip did not unpack to $HOME_DIR"
  rm -rf "$CACHE/\${project.basedir}"
  chmod -R a+rX "$HOME_DIR"
  touch "$HOME_DIR/.unpacked"
}

write_config() {
  local conf="$DIR/config"
  mkdir -p "$conf" "$DIR/data" "$DIR/logs" "$DIR/tmp"
  # jvm.options, log4j2.properties, ... from the distribution once; elasticsearch.yml on every start.
  [[ -f $conf/jvm.options ]] || cp -r "$HOME_DIR/config/." "$conf/"
  cat >"$conf/elasticsearch.yml" <<EOF
# Generated by infra/elasticsearch.sh on every start; edit the script, not this file.
cluster.name: panopticon-es
node.name: es-1
network.host: $HOST
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
discovery.type: single-node
path.data: $DIR/data
path.logs: $DIR/logs
# A throwaway test node: plain HTTP, no users (x-pack-security is in the zip and on by default).
xpack.security.enabled: false
# Dev machines often have fuller disks than the default watermarks allow.
cluster.routing.allocation.disk.threshold_enabled: false
EOF
  chown -R "$ES_USER": "$DIR"
}

start() {
  local t0 pid
  t0=$(date +%s)
  mkdir -p "$DIR"
  if pid=$(our_pid); then
    wait_healthy
    say "elasticsearch reused  $HOST:$ES_PORT (pid $pid, started earlier by elasticsearch.sh)"
    return 0
  fi
  if port_open "$ES_PORT"; then
    healthy || die "something else listens on $HOST:$ES_PORT and is not a healthy search node"
    say "elasticsearch reused  $HOST:$ES_PORT (not started by elasticsearch.sh)"
    return 0
  fi
  ensure_user
  fetch
  write_config
  local jdk
  jdk=$(java_home)
  printf '\n===== %s: starting elasticsearch %s (java %s) =====\n' "$(date -Is)" "$ES_VERSION" "$jdk" >>"$LOG"
  chown "$ES_USER": "$LOG"
  rm -f "$PIDFILE"
  # -d: the launcher returns once the server has started (or failed); the server writes its pid.
  (cd "$DIR" && runuser -u "$ES_USER" -- env ES_JAVA_HOME="$jdk" ES_PATH_CONF="$DIR/config" \
    ES_TMPDIR="$DIR/tmp" ES_JAVA_OPTS="-Xms$ES_HEAP -Xmx$ES_HEAP" \
    "$HOME_DIR/bin/elasticsearch" -d -p "$PIDFILE" </dev/null >>"$LOG" 2>&1) ||
    fail_start "the launcher failed"
  wait_healthy
  say "elasticsearch started $HOST:$ES_PORT in $(($(date +%s) - t0))s (pid $(our_pid), logs in ${DIR#"$ROOT"/})"
}

wait_healthy() {
  local deadline=$(($(date +%s) + START_TIMEOUT))
  until healthy; do
    our_pid >/dev/null || fail_start "the server exited during startup"
    (($(date +%s) < deadline)) || fail_start "not healthy after ${START_TIMEOUT}s"
    sleep 1
  done
}

stop() {
  local pid i
  if ! pid=$(our_pid); then
    say "elasticsearch not running (nothing started by elasticsearch.sh)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq $((STOP_TIMEOUT * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  say "elasticsearch stopped (pid $pid)"
}

status() {
  local pid=""
  pid=$(our_pid) || true
  if healthy; then
    say "elasticsearch up      $HOST:$ES_PORT ${pid:+(pid $pid)}"
    return 0
  fi
  say "elasticsearch down    $HOST:$ES_PORT ${pid:+(pid $pid alive but not healthy)}"
  return 3
}

case "${1:-}" in
  up | start) start ;;
  down | stop) stop ;;
  restart) stop && start ;;
  status) status ;;
  *) die "usage: $0 up|down|restart|status" ;;
esac
