#!/bin/sh
# `make deploy`: cert-manager first (a pinned release; it makes every certificate of the kind
# overlay), then the secrets (generated here, never committed), then the kind overlay, then
# wait until every workload is ready and say where the gateway is, and with which CA.
set -eu
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.16.5}"
kubectl config use-context kind-ecrin >/dev/null

echo "installing cert-manager $CERT_MANAGER_VERSION"
kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml" >/dev/null
kubectl -n cert-manager wait --for=condition=Available deployment --all --timeout=180s
# Available is not yet serving: the webhook answers once cainjector has given the API server
# its CA. A server-side dry run of an Issuer goes through the webhook: retry until it passes.
tries=0
until kubectl apply --dry-run=server -f - >/dev/null 2>&1 <<'YAML'
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: webhook-check, namespace: cert-manager}
spec: {selfSigned: {}}
YAML
do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "cert-manager's webhook did not answer in 120 s" >&2; exit 1; }
  sleep 2
done

sh deploy/create-secrets.sh --databases
kubectl apply -k deploy/k8s/overlays/kind
echo "waiting for the certificates, the databases, Redis and the four services (first start: about a minute)"
kubectl -n ecrin wait --for=condition=Ready certificate --all --timeout=180s
for db in gateway records kms sharing; do
  kubectl -n ecrin rollout status "statefulset/$db-db" --timeout=180s
done
kubectl -n ecrin wait --for=condition=Available deployment --all --timeout=300s
kubectl -n ecrin get pods

# The CA's certificate (public), for the CLI and the browser: the gateway's is signed by it.
mkdir -p var/kind
kubectl -n ecrin get secret ecrin-internal-ca -o jsonpath='{.data.ca\.crt}' | base64 -d >var/kind/ca.crt
cat <<MSG

Écrin is running on kind, TLS on every hop (certificates of the cluster's own CA).
  gateway:  https://127.0.0.1:8080   (that CA: var/kind/ca.crt)
  API docs: https://127.0.0.1:8080/docs
  CLI:      SSL_CERT_FILE=var/kind/ca.crt ECRIN_SERVER=https://127.0.0.1:8080 .venv/bin/ecrin ...
A browser warns about the certificate until var/kind/ca.crt is trusted (docs/deploy.md).
MSG
