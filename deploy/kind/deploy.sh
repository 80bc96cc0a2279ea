#!/bin/sh
# `make deploy`: secrets first (generated here, never committed), then the kind overlay,
# then wait until every workload is ready and say where the gateway is.
set -eu
kubectl config use-context kind-ecrin >/dev/null
sh deploy/create-secrets.sh --databases
kubectl apply -k deploy/k8s/overlays/kind
echo "waiting for the databases, Redis and the four services (first start: about a minute)"
for db in gateway records kms sharing; do
  kubectl -n ecrin rollout status "statefulset/$db-db" --timeout=180s
done
kubectl -n ecrin wait --for=condition=Available deployment --all --timeout=300s
kubectl -n ecrin get pods
cat <<MSG

Écrin is running on kind.
  gateway:  http://127.0.0.1:8080
  API docs: http://127.0.0.1:8080/docs
MSG
