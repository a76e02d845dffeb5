#!/usr/bin/env bash
# 10-apis.sh: enables the Google Cloud APIs the pipeline uses.
#
# Enabling an enabled API is a no-op, so this step is idempotent as it is. Compute Engine is
# enabled only with STATIC_EGRESS=true (network, Cloud Router, Cloud NAT, reserved address).
#
# Usage: deploy/10-apis.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

apis=(
  run.googleapis.com
  pubsub.googleapis.com
  cloudscheduler.googleapis.com
  secretmanager.googleapis.com
  artifactregistry.googleapis.com
  cloudbuild.googleapis.com
  iam.googleapis.com
  logging.googleapis.com
  monitoring.googleapis.com
  storage.googleapis.com
)
if is_true "$STATIC_EGRESS"; then
  apis+=(compute.googleapis.com)
fi

step "APIs of project $PROJECT_ID"
run gcloud services enable "${apis[@]}" "--project=$PROJECT_ID"
