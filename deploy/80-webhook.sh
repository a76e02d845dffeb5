#!/usr/bin/env bash
# 80-webhook.sh: registers the webhook ingester's public URL + /webhook at Stark Bank for the
# "invoice" subscription, with `stark-pipeline webhook register`, which signs with the key of
# STARK_PRIVATE_KEY_FILE (this machine's copy) and does nothing when that URL is already
# registered.
#
# Usage: deploy/80-webhook.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

step "Stark Bank webhook"
url=$(service_url "$SERVICE_WEBHOOK_INGESTER")
run_cli --stark webhook register "--url=$url/webhook"
