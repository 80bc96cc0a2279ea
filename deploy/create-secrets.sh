#!/bin/sh
# Makes the secrets Écrin references, at deploy time, in the current kubectl context:
#   internal-token-signing-key (Secret, gateway) + internal-token-public-key (ConfigMap)
#   access-token-signing-key (Secret, gateway)
#   gateway-totp-key (Secret, gateway: seals TOTP secrets at rest)
#   <service>-audit-signing-key (Secret, each service: signs its audit-chain heads)
#   redis-auth (Secret, gateway and Redis: `password` and the redis.conf that requires it)
#   with --databases: <db>-db-app (Secret: username, password) for the kind overlay's
#   PostgreSQL (in production CloudNativePG makes these).
# Nothing is written to disk. An existing secret is kept: a database initialised with a
# password, or tokens signed with a key, must not be orphaned by a re-deploy.
# No TLS certificate or key is made here: cert-manager issues them (in kind too: `make deploy`
# installs it), and the CAs' keys never leave the cluster.
# KEYS_NAMESPACE (production: ecrin-keys) receives what the kms needs: its audit key and a
# copy of internal-token-public-key. In kind it is the one namespace.
set -eu
NAMESPACE="${NAMESPACE:-ecrin}"
KEYS_NAMESPACE="${KEYS_NAMESPACE:-$NAMESPACE}"
PYTHON="${PYTHON:-.venv/bin/python}"
exists() { kubectl -n "$NAMESPACE" get "$1" "$2" >/dev/null 2>&1; }
apply() { kubectl -n "$NAMESPACE" apply -f - >/dev/null; }

kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE"
kubectl get namespace "$KEYS_NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$KEYS_NAMESPACE"

if ! exists secret internal-token-signing-key; then
  "$PYTHON" - "$NAMESPACE" <<'PY' | apply
import base64, json, sys
from ecrin_platform.tokens import generate_keypair_pem
private, public = generate_keypair_pem()
ns = sys.argv[1]
labels = {"app.kubernetes.io/part-of": "ecrin", "app.kubernetes.io/name": "gateway"}
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
     "metadata": {"name": "internal-token-signing-key", "namespace": ns, "labels": labels},
     "data": {"private.pem": base64.b64encode(private).decode()}},
    {"apiVersion": "v1", "kind": "ConfigMap",
     "metadata": {"name": "internal-token-public-key", "namespace": ns, "labels": labels},
     "data": {"public.pem": public.decode()}}]}))
PY
  echo "created internal-token-signing-key and internal-token-public-key"
fi

if ! exists secret access-token-signing-key; then
  "$PYTHON" - "$NAMESPACE" <<'PY' | apply
import base64, json, sys
from ecrin_platform.tokens import generate_keypair_pem
private, _ = generate_keypair_pem()
print(json.dumps({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
    "metadata": {"name": "access-token-signing-key", "namespace": sys.argv[1],
                 "labels": {"app.kubernetes.io/part-of": "ecrin",
                            "app.kubernetes.io/name": "gateway"}},
    "data": {"private.pem": base64.b64encode(private).decode()}}))
PY
  echo "created access-token-signing-key"
fi

# Seals the TOTP secrets at rest: a new key would leave every enrolled second factor
# unreadable, so an existing one is kept (rotation: docs/accounts.md).
if ! exists secret gateway-totp-key; then
  key="$("$PYTHON" -c 'import base64, secrets; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode())')"
  kubectl -n "$NAMESPACE" create secret generic gateway-totp-key --from-literal=key="$key" \
    --dry-run=client -o yaml | apply
  echo "created gateway-totp-key"
fi

# Devices pin each service's audit key: a new key makes them refuse its audit chains, so
# an existing one is never replaced here.
for svc in gateway records-api kms sharing; do
  ns="$NAMESPACE"; [ "$svc" = kms ] && ns="$KEYS_NAMESPACE"
  kubectl -n "$ns" get secret "$svc-audit-signing-key" >/dev/null 2>&1 && continue
  "$PYTHON" - "$ns" "$svc" <<'PY' | kubectl -n "$ns" apply -f - >/dev/null
import base64, json, sys
from ecrin_platform.tokens import generate_keypair_pem
private, _ = generate_keypair_pem()
print(json.dumps({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
    "metadata": {"name": f"{sys.argv[2]}-audit-signing-key", "namespace": sys.argv[1],
                 "labels": {"app.kubernetes.io/part-of": "ecrin",
                            "app.kubernetes.io/name": sys.argv[2]}},
    "data": {"private.pem": base64.b64encode(private).decode()}}))
PY
  echo "created $svc-audit-signing-key"
done

# The kms verifies internal tokens too: the public key, in its namespace as well.
if [ "$KEYS_NAMESPACE" != "$NAMESPACE" ]; then
  kubectl -n "$NAMESPACE" get configmap internal-token-public-key -o jsonpath='{.data.public\.pem}' \
    | kubectl -n "$KEYS_NAMESPACE" create configmap internal-token-public-key \
        --from-file=public.pem=/dev/stdin --dry-run=client -o yaml \
    | kubectl -n "$KEYS_NAMESPACE" apply -f - >/dev/null
  echo "copied internal-token-public-key to $KEYS_NAMESPACE"
fi

# Redis's password: hex, since it travels in the gateway's Redis URL (gateway.settings).
if ! exists secret redis-auth; then
  password="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')"
  printf 'requirepass %s\n' "$password" | kubectl -n "$NAMESPACE" create secret generic \
    redis-auth --from-literal=password="$password" --from-file=redis.conf=/dev/stdin \
    --dry-run=client -o yaml | apply
  echo "created redis-auth"
fi

if [ "${1:-}" = "--databases" ]; then
  for db in gateway records kms sharing; do
    exists secret "$db-db-app" && continue
    password="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(24))')"
    kubectl -n "$NAMESPACE" create secret generic "$db-db-app" \
      --from-literal=username="$db" --from-literal=password="$password" \
      --dry-run=client -o yaml | apply
    echo "created $db-db-app"
  done
fi
