#!/usr/bin/env bash
# Écrin on "four hosts" on one machine: each service and each database in its own network
# namespace with its own address, wired to one bridge, with nftables rules mirroring the
# Kubernetes NetworkPolicies (deploy/k8s). Every hop is TLS, as in production: mutual TLS
# between the gateway and the services, verify-full to each PostgreSQL (certificates from a
# throw-away CA, deploy/netns/certs.py). Then the product's story through the real `ecrin`
# CLI on the client host (deploy/netns/story.py), and proof that the edges the
# architecture forbids are blocked.
#
#   sudo deploy/netns/run.sh        (or: make netns-e2e)
#
# Needs root, iproute2, nftables (installed with apt-get when missing), PostgreSQL 15+
# server binaries and the workspace's .venv (`make sync`). Everything lives in namespaces
# named ecrin-<run>-*, whose addresses (10.200.7.0/24) exist only behind a bridge inside
# its own namespace: no route leads there from the machine or out of it. The trap removes
# every process, namespace and file it made, whatever happens. Bounded: every wait has a
# deadline, and the whole run is killed after ECRIN_NETNS_TIMEOUT seconds (default 240).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${ECRIN_PYTHON:-$ROOT/.venv/bin/python}"
PG_BIN="${ECRIN_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
TIMEOUT="${ECRIN_NETNS_TIMEOUT:-240}"
RUN="$(printf '%04x' $((RANDOM % 65536)))"
NS="ecrin-$RUN"
NET=10.200.7

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (network namespaces and nftables need it)"
[ -x "$PYTHON" ] || fail "no $PYTHON: run 'make sync' first"
[ -x "$PG_BIN/initdb" ] || fail "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
id postgres >/dev/null 2>&1 || fail "no postgres user to run PostgreSQL as"
if ! command -v nft >/dev/null; then
  say "nftables is missing; installing it"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null \
    || fail "cannot install nftables"
fi

# host: (namespace suffix, address). Services first, then their databases.
declare -A ADDR=(
  [client]=$NET.10 [gateway]=$NET.11 [records-api]=$NET.12 [kms]=$NET.13 [sharing]=$NET.14
  [gateway-db]=$NET.21 [records-db]=$NET.22 [kms-db]=$NET.23 [sharing-db]=$NET.24
)
HOSTS=(client gateway records-api kms sharing gateway-db records-db kms-db sharing-db)
declare -A PORT=([gateway]=8000 [records-api]=8001 [kms]=8002 [sharing]=8003)
declare -A PACKAGE=([gateway]=gateway [records-api]=records_api [kms]=kms [sharing]=sharing)
declare -A PREFIX=([gateway]=ECRIN_GATEWAY_ [records-api]=ECRIN_RECORDS_ [kms]=ECRIN_KMS_
                   [sharing]=ECRIN_SHARING_)
declare -A DB=([gateway]=gateway [records-api]=records [kms]=kms [sharing]=sharing)
SERVICES=(gateway records-api kms sharing)

# The allowed edges, "source destination port": the same list as the NetworkPolicies
# (tests/deploy/test_network_policies.py checks that list against the rendered manifests).
EDGES=(
  "client gateway 8000"
  "gateway records-api 8001" "gateway kms 8002" "gateway sharing 8003"
  "records-api sharing 8003" "kms sharing 8003"
  "sharing records-api 8001"
  "gateway gateway-db 5432" "records-api records-db 5432" "kms kms-db 5432"
  "sharing sharing-db 5432"
)

WORK="$(mktemp -d /tmp/ecrin-netns.XXXXXX)"
chmod 755 "$WORK"
PGW="$WORK/pg"   # PostgreSQL's own folder: data directories, sockets and logs
mkdir -m 700 "$PGW" && chown postgres: "$PGW"
PIDS=()

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for host in gateway-db records-db kms-db sharing-db; do
    [ -d "$PGW/$host" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGW/$host" \
      -m immediate -w -t 10 stop >/dev/null 2>&1
  done
  for pid in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null
  done
  for host in "${HOSTS[@]}" switch; do
    # Anything still inside one of our namespaces is ours: end it before removing it.
    for pid in $(ip netns pids "$NS-$host" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$NS-$host" 2>/dev/null
  done
  rm -rf "$WORK"
  if [ "$rc" = 0 ]; then say "cleaned up: namespaces $NS-*, processes and $WORK removed"; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM
# The whole run is bounded: past the deadline, this shell is told to stop (and cleans up).
MAIN=$$
(
  sleep "$TIMEOUT" & nap=$!
  trap 'kill $nap 2>/dev/null; exit 0' TERM
  wait $nap && echo "netns e2e: over ${TIMEOUT}s, stopping" >&2 && kill -TERM $MAIN
) >/dev/null 2>&1 &
WATCHDOG=$!
PIDS+=("$WATCHDOG")

in_ns() { local host=$1; shift; ip netns exec "$NS-$host" "$@"; }

step "network: one bridge, nine hosts, run $RUN"
ip netns add "$NS-switch"
in_ns switch ip link add br0 type bridge
in_ns switch ip link set br0 up
i=0
for host in "${HOSTS[@]}"; do
  i=$((i + 1))
  ip netns add "$NS-$host"
  # veth names are at most 15 characters: e<run><index> / b<run><index>.
  ip link add "e$RUN$i" netns "$NS-$host" type veth peer name "b$RUN$i" netns "$NS-switch"
  in_ns switch ip link set "b$RUN$i" master br0 up
  in_ns "$host" ip link set lo up
  in_ns "$host" ip link set "e$RUN$i" name eth0
  in_ns "$host" ip addr add "${ADDR[$host]}/24" dev eth0
  in_ns "$host" ip link set eth0 up
  say "  $(printf '%-11s' "$host") ${ADDR[$host]}"
done

step "firewall: nftables in every host, default drop, the allowed edges only"
for host in "${HOSTS[@]}"; do
  rules="table inet ecrin {
  chain input { type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
    ip protocol icmp accept"
  out="  chain output { type filter hook output priority 0; policy drop;
    oif lo accept
    ct state established,related accept
    ip protocol icmp accept"
  for edge in "${EDGES[@]}"; do
    read -r src dst port <<<"$edge"
    [ "$dst" = "$host" ] && rules+="
    ip saddr ${ADDR[$src]} tcp dport $port accept"
    [ "$src" = "$host" ] && out+="
    ip daddr ${ADDR[$dst]} tcp dport $port accept"
  done
  printf '%s\n  }\n%s\n  }\n}\n' "$rules" "$out" > "$WORK/$host.nft"
  in_ns "$host" nft -f "$WORK/$host.nft"
done
for edge in "${EDGES[@]}"; do read -r src dst port <<<"$edge"; say "  allow $src -> $dst:$port"; done

step "certificates: one CA, a certificate per service and per database host"
TLS="$WORK/tls"
mkdir -m 755 "$TLS"
"$PYTHON" "$ROOT/deploy/netns/certs.py" "$TLS" $(for h in "${HOSTS[@]}"; do
  [ "$h" = client ] || printf '%s=%s ' "$h" "${ADDR[$h]}"; done) || fail "certificates"
say "  CA and $(( ${#HOSTS[@]} - 1 )) certificates (server and client auth) in $TLS"

step "databases: one PostgreSQL per service, each on its own host, TLS only"
runuser -u postgres -- "$PG_BIN/initdb" -D "$PGW/template" -U postgres --auth-local=trust \
  --auth-host=reject -E UTF8 --no-sync >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log"; fail "initdb"; }
declare -A PASSWORD
for svc in "${SERVICES[@]}"; do
  host="$svc-db"; [ "$svc" = records-api ] && host=records-db
  db=${DB[$svc]}
  PASSWORD[$svc]="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')"
  cp -a "$PGW/template" "$PGW/$host"
  install -o postgres -m 600 "$TLS/$host.key" "$PGW/$host/server.key"
  install -o postgres -m 644 "$TLS/$host.crt" "$PGW/$host/server.crt"
  # Only the service's own host and role may reach its database, over TLS (hostssl: a
  # plain connection matches no line), with a password.
  printf 'local all postgres trust\nhostssl %s %s %s/32 scram-sha-256\n' "$db" "$db" \
    "${ADDR[$svc]}" > "$PGW/$host/pg_hba.conf"
  in_ns "$host" runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGW/$host" -w -t 30 \
    -l "$PGW/$host.log" -o "-c listen_addresses=${ADDR[$host]} -c port=5432 \
    -c unix_socket_directories=$PGW/$host -c fsync=off -c shared_buffers=16MB \
    -c ssl=on -c ssl_min_protocol_version=TLSv1.2" start >/dev/null
  in_ns "$host" runuser -u postgres -- "$PG_BIN/psql" -qX -h "$PGW/$host" -U postgres \
    -v ON_ERROR_STOP=1 -c "CREATE ROLE $db LOGIN PASSWORD '${PASSWORD[$svc]}'" \
    -c "CREATE DATABASE $db OWNER $db" >/dev/null
  say "  $host on ${ADDR[$host]}:5432 (database and role $db, hostssl only)"
done
rm -rf "$PGW/template"

step "services: keys, migrations, four processes"
"$PYTHON" - "$WORK" <<'PY'
import os, sys
from ecrin_platform.tokens import generate_keypair_pem
for name in ("internal-token", "access-token", "audit-gateway", "audit-records-api",
             "audit-kms", "audit-sharing"):
    private, public = generate_keypair_pem()
    fd = os.open(os.path.join(sys.argv[1], f"{name}.key"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, private)
    os.close(fd)
    with open(os.path.join(sys.argv[1], f"{name}.pub"), "wb") as f:
        f.write(public)
import base64, secrets  # the gateway's TOTP at-rest key
fd = os.open(os.path.join(sys.argv[1], "totp.key"), os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"="))
os.close(fd)
PY
service_env() {
  local svc=$1 prefix=${PREFIX[$1]}
  local host="$svc-db"; [ "$svc" = records-api ] && host=records-db
  # verify-full: the database host's certificate must chain to the CA and name its address.
  echo "${prefix}DATABASE_URL=postgresql+asyncpg://${DB[$svc]}:${PASSWORD[$svc]}@${ADDR[$host]}:5432/${DB[$svc]}?ssl=verify-full"
  echo "PGSSLROOTCERT=$TLS/ca.crt"
  echo "${prefix}AUDIT_SIGNING_KEY_FILE=$WORK/audit-$svc.key"
  echo "${prefix}TLS_CERT_FILE=$TLS/$svc.crt"
  echo "${prefix}TLS_KEY_FILE=$TLS/$svc.key"
  echo "${prefix}TLS_CA_FILE=$TLS/ca.crt"
  if [ "$svc" = gateway ]; then
    echo "${prefix}INTERNAL_TOKEN_PRIVATE_KEY_FILE=$WORK/internal-token.key"
    echo "${prefix}ACCESS_TOKEN_PRIVATE_KEY_FILE=$WORK/access-token.key"
    echo "${prefix}TOTP_KEY_FILE=$WORK/totp.key"
    echo "${prefix}RECORDS_URL=https://${ADDR[records-api]}:8001"
    echo "${prefix}KMS_URL=https://${ADDR[kms]}:8002"
    echo "${prefix}SHARING_URL=https://${ADDR[sharing]}:8003"
    echo "${prefix}UPSTREAM_TIMEOUT_S=5"
    # The client host stands for browsers and the CLI: TLS, without a client certificate.
    echo "${prefix}TLS_REQUIRE_CLIENT_CERT=false"
    # The story's devices use the test profile's cheap Argon2id, and one address.
    echo "${prefix}MIN_KDF_OPSLIMIT=1"
    echo "${prefix}MIN_KDF_MEMLIMIT=8192"
    echo "${prefix}AUTH_RATE_LIMIT_PER_IP=10000/minute"
    echo "${prefix}SIGNUP_RATE_LIMIT_PER_IP=10000/minute"
  else
    echo "${prefix}INTERNAL_TOKEN_PUBLIC_KEY_FILE=$WORK/internal-token.pub"
    echo "${prefix}SHARING_URL=https://${ADDR[sharing]}:8003"
  fi
  # Access-change notices: to the records API only (the kms is the keys' site).
  [ "$svc" = sharing ] && echo "${prefix}RECORDS_URL=https://${ADDR[records-api]}:8001"
  return 0
}
for svc in "${SERVICES[@]}"; do
  mapfile -t env_lines < <(service_env "$svc")
  # Each migration connects from the service's own host: the firewall is on the way.
  in_ns "$svc" env -i PATH=/usr/bin:/bin HOME="$WORK" "${env_lines[@]}" \
    "$PYTHON" -m "${PACKAGE[$svc]}" migrate >"$WORK/$svc-migrate.log" 2>&1 \
    || { cat "$WORK/$svc-migrate.log"; fail "$svc migrate"; }
  in_ns "$svc" env -i PATH=/usr/bin:/bin HOME="$WORK" "${env_lines[@]}" \
    "$PYTHON" -m "${PACKAGE[$svc]}" serve --host "${ADDR[$svc]}" --port "${PORT[$svc]}" \
    >"$WORK/$svc.log" 2>&1 &
  PIDS+=("$!")
  say "  $svc migrated; serving on ${ADDR[$svc]}:${PORT[$svc]}"
done
for svc in "${SERVICES[@]}"; do
  deadline=$((SECONDS + 40))
  # Readiness from the service's own host: /readyz is 200 once its database is reachable
  # and migrated to head.
  until in_ns "$svc" curl -fs -m 2 -o /dev/null --cacert "$TLS/ca.crt" --cert "$TLS/$svc.crt" \
      --key "$TLS/$svc.key" "https://${ADDR[$svc]}:${PORT[$svc]}/readyz"; do
    [ $SECONDS -lt $deadline ] || { tail -30 "$WORK/$svc.log"; fail "$svc not ready"; }
    sleep 0.3
  done
  say "  $svc ready"
done

GW="https://${ADDR[gateway]}:8000"
client() { in_ns client curl -sS -m 10 --cacert "$TLS/ca.crt" "$@"; }
check() {  # check "what" expected actual
  if [ "$2" = "$3" ]; then say "  ok    $1: $3"; else fail "$1: expected $2, got $3"; fi
}

step "scenario from the client host, through the gateway"
check "GET /healthz" 200 "$(client -o /dev/null -w '%{http_code}' "$GW/healthz")"
check "GET /readyz" 200 "$(client -o /dev/null -w '%{http_code}' "$GW/readyz")"
check "GET /docs (Swagger UI)" 200 "$(client -o /dev/null -w '%{http_code}' "$GW/docs")"
tags="$(client "$GW/openapi.json" | "$PYTHON" -c \
  'import json,sys; print(",".join(t["name"] for t in json.load(sys.stdin)["tags"]))')"
check "OpenAPI tags" "gateway,records-api,kms,sharing" "$tags"
for pair in records:records-api keys:kms files:sharing; do
  area=${pair%%:*}; svc=${pair#*:}
  answer="$(client "$GW/v1/$area/service-info" | "$PYTHON" -c \
    'import json,sys; print(json.load(sys.stdin)["service"])')"
  check "GET /v1/$area/service-info answered by" "$svc" "$answer"
done

step "the story, from the client host through the ecrin CLI, over TLS"
mkdir -p "$WORK/story"
in_ns client env -i PATH=/usr/bin:/bin HOME="$WORK" SSL_CERT_FILE="$TLS/ca.crt" \
  "$PYTHON" "$ROOT/deploy/netns/story.py" "$GW" "$WORK/story" \
  || { for svc in "${SERVICES[@]}"; do tail -5 "$WORK/$svc.log"; done; fail "the story"; }

step "TLS: the services answer only over mutual TLS"
code() { in_ns "$1" curl -s -m 5 -o /dev/null -w '%{http_code}' "${@:2}" || true; }
check "gateway -> kms, its client certificate" 200 \
  "$(code gateway --cacert "$TLS/ca.crt" --cert "$TLS/gateway.crt" --key "$TLS/gateway.key" \
     "https://${ADDR[kms]}:8002/healthz")"
check "gateway -> kms, no client certificate" 000 \
  "$(code gateway --cacert "$TLS/ca.crt" "https://${ADDR[kms]}:8002/healthz")"
check "gateway -> kms, plain HTTP" 000 "$(code gateway "http://${ADDR[kms]}:8002/healthz")"
check "kms -> kms-db, without TLS" refused "$(in_ns kms env PGPASSWORD="${PASSWORD[kms]}" \
  PGSSLMODE=disable "$PG_BIN/psql" -h "${ADDR[kms-db]}" -U kms -d kms -Atc 'select 1' \
  >/dev/null 2>&1 && echo accepted || echo refused)"

# 0 if a TCP connection from host to addr:port opens within 3 s.
connects() { in_ns "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; }
# edges "expected src dst port"...: every probe at once (a blocked one waits out its 3 s),
# then each checked in order.
edges() {
  local i=0 pids=() edge want src dst port
  for edge in "$@"; do
    read -r want src dst port <<<"$edge"
    { connects "$src" "${ADDR[$dst]}" "$port" && echo open || echo blocked; } \
      >"$WORK/edge.$i" &
    pids+=($!); i=$((i + 1))
  done
  wait "${pids[@]}"
  i=0
  for edge in "$@"; do
    read -r want src dst port <<<"$edge"
    check "$(printf '%-12s -> %-11s :%s' "$src" "$dst" "$port")" "$want" "$(cat "$WORK/edge.$i")"
    i=$((i + 1))
  done
}

step "edges: allowed ones open, forbidden ones blocked"
edges "open kms kms-db 5432" \
  "blocked records-api kms-db 5432" \
  "blocked records-api kms 8002" \
  "blocked gateway kms-db 5432" \
  "open gateway kms 8002" \
  "blocked client kms 8002" \
  "blocked client records-api 8001" \
  "blocked client sharing 8003" \
  "blocked client gateway-db 5432" \
  "blocked sharing kms 8002" \
  "open records-api sharing 8003" \
  "open sharing records-api 8001"
# Blocked at the destination too: with the records-api host's own output rules gone, the
# kms-db host's input rules still drop it.
in_ns records-api nft delete table inet ecrin
say "  (records-api host's own rules removed: kms-db's input rules alone)"
edges "blocked records-api kms-db 5432"
in_ns records-api nft -f "$WORK/records-api.nft"

printf '\nnetns e2e: all checks passed\n'
