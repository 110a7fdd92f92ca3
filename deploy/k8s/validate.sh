#!/usr/bin/env bash
# Render every overlay with kustomize and validate the result offline against the Kubernetes OpenAPI
# schemas (strict: unknown fields are errors). Called by `make k8s-validate`; needs no cluster.
#
#   deploy/k8s/validate.sh                 # all overlays, Kubernetes 1.30
#   K8S_VERSION=1.31.0 deploy/k8s/validate.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
k8s_version="${K8S_VERSION:-1.30.0}"

validator="${KUBERNETES_VALIDATE:-}"
if [[ -z "$validator" ]]; then
  if [[ -x "$repo/.venv/bin/kubernetes-validate" ]]; then
    validator="$repo/.venv/bin/kubernetes-validate"
  else
    validator="$(command -v kubernetes-validate || true)"
  fi
fi
if [[ -z "$validator" ]]; then
  echo "validate.sh: kubernetes-validate not found (pip install kubernetes-validate)" >&2
  exit 2
fi
command -v kubectl >/dev/null || { echo "validate.sh: kubectl not found" >&2; exit 2; }

rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT

status=0
for overlay in "$here"/overlays/*/; do
  name="$(basename "$overlay")"
  kubectl kustomize "$overlay" > "$rendered/$name.yaml"
  if "$validator" --strict --quiet -k "$k8s_version" "$rendered/$name.yaml"; then
    echo "ok   overlays/$name ($(grep -c '^kind:' "$rendered/$name.yaml") resources, Kubernetes $k8s_version)"
  else
    echo "FAIL overlays/$name" >&2
    status=1
  fi
done

# The placeholder Secret is in no overlay, but operators copy it: keep it valid too.
if "$validator" --strict --quiet -k "$k8s_version" "$here/base/secret.example.yaml"; then
  echo "ok   base/secret.example.yaml"
else
  echo "FAIL base/secret.example.yaml" >&2
  status=1
fi
exit "$status"
