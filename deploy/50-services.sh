#!/usr/bin/env bash
# 50-services.sh: deploys the three Cloud Run services and lets Pub/Sub's push identity invoke
# the two private ones.
#
#   invoice-sender    private (--no-allow-unauthenticated), ingress $PUSH_SERVICES_INGRESS;
#                     Pub/Sub pushes pending_invoices to /push with an OIDC token of pubsub-push
#   money-sender      private, same; Pub/Sub pushes paid_invoices to /push
#   webhook-ingester  public, ingress all: Stark posts its webhooks to /webhook, and the service
#                     itself checks Stark's Digital-Signature. Public means --allow-unauthenticated
#                     (an allUsers binding), or with INGESTER_INVOKER_IAM_CHECK=false
#                     --no-invoker-iam-check (Cloud Run skips the IAM check), the documented way
#                     to serve the public under a domain restricted sharing policy, which
#                     refuses allUsers.
#
# Each runs as its own service account and gets the Stark private key as a file, mounted by
# version number: --set-secrets=/secrets/stark/private-key.pem=$STARK_KEY_SECRET:N, N being
# the latest version (the one 40-secrets.sh added or found), never :latest. A new key version
# thus rolls out new revisions, and each revision, a rolled-back one included, keeps the key it
# was deployed with. STARK_PRIVATE_KEY_FILE points at the file. `gcloud run deploy` creates a
# missing service and updates an existing one; --set-env-vars and --set-secrets replace the
# whole list, so the service ends up exactly as configured.
#
# A startup probe on GET /readyz (200 once the service has reached Stark's API host) gates
# each revision: probed every 5 s for up to 220 s, since an instance with Direct VPC egress
# through Cloud NAT can wait a minute or more for its first outbound connection. With
# STATIC_EGRESS=true the services use Direct VPC egress for all traffic (45-egress.sh) and the
# ingester keeps INGESTER_MIN_INSTANCES (at least 1) warm; with false they are detached from
# any network. The request timeout (SERVICE_TIMEOUT) is below the 60 s ack deadline of the
# subscriptions, and the Stark calls of one push fit in it (checked with the configuration).
#
# Usage: deploy/50-services.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

STARTUP_PROBE='httpGet.path=/readyz,periodSeconds=5,timeoutSeconds=4,failureThreshold=44'

# deploy_service NAME SERVICE_ACCOUNT INGRESS MIN_INSTANCES NAME=VALUE...
# with the authentication flags in AUTH_FLAGS.
deploy_service() {
  local name=$1 account=$2 ingress=$3 min=$4
  shift 4
  network_flags
  step "Service $name"
  run gcloud run deploy "$name" "--project=$PROJECT_ID" "--region=$REGION" \
    "--image=$(image_ref "$name")" "--service-account=$(sa_email "$account")" \
    "${AUTH_FLAGS[@]}" "--ingress=$ingress" "--labels=$LABELS" \
    --port=8080 "--cpu=$SERVICE_CPU" "--memory=$SERVICE_MEMORY" "--timeout=$SERVICE_TIMEOUT" \
    "--min-instances=$min" "--max-instances=$SERVICE_MAX_INSTANCES" \
    "--startup-probe=$STARTUP_PROBE" \
    "$(env_vars_flag "$@")" \
    "$(secret_flag "$key_version")" \
    "${NETWORK_FLAGS[@]}"
}

step "Stark key version to mount"
key_version=$(stark_key_version)
say "$STARK_KEY_SECRET:$key_version at $STARK_KEY_MOUNT"

common_env() {
  ENV_PAIRS=(LOG_FORMAT=json "GOOGLE_CLOUD_PROJECT=$PROJECT_ID")
  stark_env_pairs
  add_optional_env RUST_LOG
}

AUTH_FLAGS=(--no-allow-unauthenticated)
common_env
deploy_service "$SERVICE_INVOICE_SENDER" "$SA_SENDER" "$PUSH_SERVICES_INGRESS" 0 "${ENV_PAIRS[@]}"

if is_true "$INGESTER_INVOKER_IAM_CHECK"; then
  AUTH_FLAGS=(--allow-unauthenticated)
else
  AUTH_FLAGS=(--no-invoker-iam-check)
fi
common_env
ENV_PAIRS+=("PUBSUB_PROJECT_ID=$PROJECT_ID")
add_optional_env WEBHOOK_MAX_BODY_BYTES PUBLISH_TIMEOUT_SECONDS
deploy_service "$SERVICE_WEBHOOK_INGESTER" "$SA_INGESTER" all "$INGESTER_MIN_INSTANCES" "${ENV_PAIRS[@]}"

AUTH_FLAGS=(--no-allow-unauthenticated)
common_env
payout_env_pairs
deploy_service "$SERVICE_MONEY_SENDER" "$SA_MONEY" "$PUSH_SERVICES_INGRESS" 0 "${ENV_PAIRS[@]}"

step "Who may invoke the private services: $SA_PUSH (Pub/Sub push) only"
for service in "$SERVICE_INVOICE_SENDER" "$SERVICE_MONEY_SENDER"; do
  grant "serviceAccount:$(sa_email "$SA_PUSH")" roles/run.invoker \
    "run services" "$service" "--region=$REGION" "--project=$PROJECT_ID"
done
