#!/usr/bin/env bash
# 40-secrets.sh: puts the Stark private key in Secret Manager and lets the three services that
# sign requests to Stark, and the reconciler, read it.
#
# - The secret ($STARK_KEY_SECRET) is created once, with automatic replication.
# - A version is added only when the file differs from the latest version, so re-running this
#   step does not pile up versions; rotating the key is: replace the file, re-run this step,
#   50-services.sh and 70-scheduler.sh (see deploy/README.md, "Rotate the Stark key").
# - roles/secretmanager.secretAccessor on this secret only, for invoice-sender,
#   webhook-ingester, money-sender and reconciler; the spammer never sees the key.
# Cloud Run mounts the version this step added or found, by its number (stark-private-key:N,
# never :latest), as the file /secrets/stark/private-key.pem (50-services.sh, 70-scheduler.sh):
# every revision keeps the key it was deployed with, and rolling back to a revision rolls back
# to its key.
#
# Usage: deploy/40-secrets.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

step "Secret $STARK_KEY_SECRET"
ensure "secret $STARK_KEY_SECRET" \
  gcloud secrets describe "$STARK_KEY_SECRET" "--project=$PROJECT_ID" \
  -- gcloud secrets create "$STARK_KEY_SECRET" "--project=$PROJECT_ID" \
  --replication-policy=automatic "--labels=$LABELS"

access=(gcloud secrets versions access latest "--secret=$STARK_KEY_SECRET" "--project=$PROJECT_ID")
add=(gcloud secrets versions add "$STARK_KEY_SECRET" "--project=$PROJECT_ID" "--data-file=$STARK_PRIVATE_KEY_FILE")
if $DRY_RUN; then
  plan "compared with $STARK_PRIVATE_KEY_FILE, never printed" "${access[@]}"
  plan "only if the latest version differs from $STARK_PRIVATE_KEY_FILE" "${add[@]}"
# The comparison strips trailing newlines on both sides; the key never reaches a file or the
# terminal.
elif [ "$("${access[@]}" 2>/dev/null)" = "$(cat "$STARK_PRIVATE_KEY_FILE")" ]; then
  say "the latest version of $STARK_KEY_SECRET already holds $STARK_PRIVATE_KEY_FILE"
else
  say "adding a version of $STARK_KEY_SECRET from $STARK_PRIVATE_KEY_FILE"
  run "${add[@]}" >/dev/null
fi
version=$(stark_key_version)
say "the services and the reconciler mount $STARK_KEY_SECRET:$version"

step "Who may read $STARK_KEY_SECRET"
for name in "$SA_SENDER" "$SA_INGESTER" "$SA_MONEY" "$SA_RECONCILER"; do
  grant "serviceAccount:$(sa_email "$name")" roles/secretmanager.secretAccessor \
    secrets "$STARK_KEY_SECRET" "--project=$PROJECT_ID"
done
