#!/usr/bin/env bash
# A local try-out of the distributed engine, secured: a 3-node NATS cluster (R3
# streams) with TLS for clients and between the nodes and one user per role
# (deploy/nats/permissions.conf), and the roles as separate processes — two
# `behalf command` (the first also on HTTP :8080), two `behalf project` (the first also
# on HTTP :8081), one `behalf notify`. The first `up` makes a local CA, the nodes'
# certificate and the roles' passwords under deploy/run/secrets (owner-only).
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
URLS=tls://127.0.0.1:14222,tls://127.0.0.1:24222,tls://127.0.0.1:34222
SECRETS=$RUN/secrets
ROLES=(command project notify producer auditor)

# A local CA, one certificate for the nodes (server and client use: the nodes verify
# each other), and a random password per role.
secrets() {
  [ -f "$SECRETS/node.pem" ] && return 0
  command -v openssl >/dev/null || { echo "openssl is needed to make the test certificates" >&2; exit 1; }
  mkdir -p "$SECRETS"
  chmod 700 "$SECRETS"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 30 -subj "/CN=behalf local CA" \
    -keyout "$SECRETS/ca.key" -out "$SECRETS/ca.pem" 2>/dev/null
  openssl req "${ec[@]}" -subj "/CN=behalf node" -keyout "$SECRETS/node.key" -out "$SECRETS/node.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$SECRETS/node.ext"
  openssl x509 -req -in "$SECRETS/node.csr" -CA "$SECRETS/ca.pem" -CAkey "$SECRETS/ca.key" -CAcreateserial \
    -days 30 -extfile "$SECRETS/node.ext" -out "$SECRETS/node.pem" 2>/dev/null
  for role in "${ROLES[@]}"; do openssl rand -hex 16 >"$SECRETS/$role.password"; done
  echo "made a local CA, the nodes' certificate and the roles' passwords in $SECRETS"
}

password() { cat "$SECRETS/$1.password"; }

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
  secrets
  # nats-server reads each role's password from its environment (permissions.conf).
  local pw=()
  for role in "${ROLES[@]}"; do pw+=("BEHALF_NATS_${role^^}_PASSWORD=$(password "$role")"); done
  for n in 1 2 3; do start "nats-n$n" env "${pw[@]}" "$NATS_BIN" -c "deploy/nats/n$n.conf"; done
  for n in 1 2 3; do wait_for "$RUN/nats-n$n.log" "Server is ready"; done
  local r=(--nats "$URLS" --nats-replicas 3 --nats-ca "$SECRETS/ca.pem")
  as() { # role, then the command: the role's user, its password from the environment
    local role=$1; shift
    exec env BEHALF_NATS_PASSWORD="$(password "$role")" "$@" --nats-user "$role"
  }
  start command-1 as command "$BEHALF" command "${r[@]}" --data-dir "$RUN/command-1" --listen 127.0.0.1:8080
  wait_for "$RUN/command-1.log" "listening on"
  start command-2 as command "$BEHALF" command "${r[@]}" --data-dir "$RUN/command-2"
  start project-1 as project "$BEHALF" project "${r[@]}" --data-dir "$RUN/project-1" --listen 127.0.0.1:8081
  start project-2 as project "$BEHALF" project "${r[@]}" --data-dir "$RUN/project-2"
  start notify as notify "$BEHALF" notify "${r[@]}" --data-dir "$RUN/notify"
  wait_for "$RUN/project-1.log" "listening on"
  echo
  echo "commands: http://127.0.0.1:8080/v1/commands or NATS request behalf.cmd"
  echo "queries:  http://127.0.0.1:8081/v1/...      or NATS request behalf.query.<name>"
  echo "NATS:     $URLS, CA $SECRETS/ca.pem; producers as user 'producer'"
  echo "          (password in $SECRETS/producer.password), auditors as 'auditor'"
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
