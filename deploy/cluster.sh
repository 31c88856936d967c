#!/usr/bin/env bash
# A local try-out of the distributed engine: a 3-node NATS cluster (R3 streams) and the
# roles as separate processes — two `behalf command` (the first also on HTTP :8080),
# two `behalf project` (the first also on HTTP :8081), one `behalf notify`.
#
#   deploy/cluster.sh up      start everything (state under deploy/run, git-ignored)
#   deploy/cluster.sh status  what runs
#   deploy/cluster.sh down    stop everything (SIGTERM; state is kept)
#   deploy/cluster.sh clean   stop and delete deploy/run
#
# Needs `./dev setup` (the pinned nats-server) and a built binary
# (`cargo build --release -p behalf`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=deploy/run
NATS_BIN=${BEHALF_NATS_SERVER:-tools/bin/nats-server}
BEHALF=${BEHALF_BIN:-target/release/behalf}
URLS=nats://127.0.0.1:14222,nats://127.0.0.1:24222,nats://127.0.0.1:34222

start() { # name, command...
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  echo "started $name (pid $!, log $RUN/$name.log)"
}

wait_for() { # log file, text
  for _ in $(seq 1 300); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "gave up waiting for '$2' in $1" >&2
  exit 1
}

up() {
  [ -x "$NATS_BIN" ] || { echo "no nats-server at $NATS_BIN; run ./dev setup" >&2; exit 1; }
  [ -x "$BEHALF" ] || { echo "no behalf binary at $BEHALF; run cargo build --release -p behalf" >&2; exit 1; }
  mkdir -p "$RUN"
  for n in 1 2 3; do start "nats-n$n" "$NATS_BIN" -c "deploy/nats/n$n.conf"; done
  for n in 1 2 3; do wait_for "$RUN/nats-n$n.log" "Server is ready"; done
  local r=(--nats "$URLS" --nats-replicas 3)
  start command-1 "$BEHALF" command "${r[@]}" --data-dir "$RUN/command-1" --listen 127.0.0.1:8080
  wait_for "$RUN/command-1.log" "listening on"
  start command-2 "$BEHALF" command "${r[@]}" --data-dir "$RUN/command-2"
  start project-1 "$BEHALF" project "${r[@]}" --data-dir "$RUN/project-1" --listen 127.0.0.1:8081
  start project-2 "$BEHALF" project "${r[@]}" --data-dir "$RUN/project-2"
  start notify "$BEHALF" notify "${r[@]}" --data-dir "$RUN/notify"
  wait_for "$RUN/project-1.log" "listening on"
  echo
  echo "commands: http://127.0.0.1:8080/v1/commands or NATS request behalf.cmd"
  echo "queries:  http://127.0.0.1:8081/v1/...      or NATS request behalf.query.<name>"
  if [ -f "$RUN/command-1/admin.token" ]; then
    echo "admin token: $RUN/command-1/admin.token"
  fi
}

status() {
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || { echo "nothing runs"; return; }
    local pid; pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then echo "$(basename "$f" .pid): running (pid $pid)"; else echo "$(basename "$f" .pid): stopped"; fi
  done
}

down() {
  # Roles first, then the servers.
  for f in "$RUN"/command-*.pid "$RUN"/project-*.pid "$RUN"/notify.pid "$RUN"/nats-*.pid; do
    [ -e "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  echo "stopped"
}

case "${1:-}" in
  up) up ;;
  status) status ;;
  down) down ;;
  clean) down; rm -rf "$RUN" ;;
  *) echo "usage: deploy/cluster.sh up | status | down | clean" >&2; exit 2 ;;
esac
