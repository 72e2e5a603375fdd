#!/bin/sh
# The platform image's entrypoint. The stack hands the watch config over as text
# (AIOPS_CONFIG_TOML: services, mode, the SNS topic of each escalation role); `aiops watch`,
# `serve` and `train` read a file, so it is written to one and AIOPS_CONFIG names it.
set -eu
if [ -n "${AIOPS_CONFIG_TOML:-}" ] && [ -z "${AIOPS_CONFIG:-}" ]; then
  config="${AIOPS_CONFIG_FILE:-/tmp/aiops.toml}"
  printf '%s\n' "$AIOPS_CONFIG_TOML" > "$config"
  export AIOPS_CONFIG="$config"
fi
exec "$@"
