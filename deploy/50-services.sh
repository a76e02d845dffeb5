#!/usr/bin/env bash
# 50-services.sh: deploys the three Cloud Run services and lets Pub/Sub's push identity invoke
# the two private ones.
#
#   invoice-sender    private (--no-allow-unauthenticated), ingress $PUSH_SERVICES_INGRESS;
#                     Pub/Sub pushes pending_invoices to /push with an OIDC token of pubsub-push
#   money-sender      private, same; Pub/Sub pushes paid_invoices to /push
#   webhook-ingester  public (--allow-unauthenticated, ingress all): Stark posts its webhooks to
#                     /webhook, and the service itself checks Stark's Digital-Signature
#
# Each runs as its own service account and gets the Stark private key as a file:
# --set-secrets=/secrets/stark/private-key.pem=$STARK_KEY_SECRET:latest, with
# STARK_PRIVATE_KEY_FILE pointing there, and STARK_KEY_SECRET_VERSION naming the version that
# was latest at deploy time, so that a new key version rolls out new revisions (the services
# read the key once, at start). `gcloud run deploy` creates a missing service and
# updates an existing one; --set-env-vars and --set-secrets replace the whole list, so the
# service ends up exactly as configured. A startup probe on GET /healthz gates each revision.
# With STATIC_EGRESS=true the services use Direct VPC egress for all traffic (45-egress.sh);
# with false they are detached from any network.
#
# Usage: deploy/50-services.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

# deploy_service NAME SERVICE_ACCOUNT AUTH_FLAG INGRESS MIN_INSTANCES NAME=VALUE...
deploy_service() {
  local name=$1 account=$2 auth=$3 ingress=$4 min=$5
  shift 5
  local network=(--clear-network)
  if is_true "$STATIC_EGRESS"; then
    network=("--network=$EGRESS_NETWORK" "--subnet=$EGRESS_SUBNET" --vpc-egress=all-traffic)
  fi
  step "Service $name"
  run gcloud run deploy "$name" "--project=$PROJECT_ID" "--region=$REGION" \
    "--image=$(image_ref "$name")" "--service-account=$(sa_email "$account")" \
    "$auth" "--ingress=$ingress" "--labels=$LABELS" \
    --port=8080 "--cpu=$SERVICE_CPU" "--memory=$SERVICE_MEMORY" "--timeout=$SERVICE_TIMEOUT" \
    "--min-instances=$min" "--max-instances=$SERVICE_MAX_INSTANCES" \
    '--startup-probe=httpGet.path=/healthz,periodSeconds=2,failureThreshold=30,timeoutSeconds=1' \
    "$(env_vars_flag "$@")" \
    "--set-secrets=$STARK_KEY_MOUNT=$STARK_KEY_SECRET:latest" \
    "${network[@]}"
}

# The key's latest Secret Manager version, recorded in each service's environment: the services
# read the mounted key once, at start, so a new key version must roll out new revisions, and a
# changed variable is what makes `gcloud run deploy` create them (see 40-secrets.sh).
key_version=$(value_of '<latest-key-version>' gcloud secrets versions describe latest \
  "--secret=$STARK_KEY_SECRET" "--project=$PROJECT_ID" '--format=value(name)')
key_version=${key_version##*/}

common_env() {
  ENV_PAIRS=(LOG_FORMAT=json "GOOGLE_CLOUD_PROJECT=$PROJECT_ID")
  stark_env_pairs
  ENV_PAIRS+=("STARK_KEY_SECRET_VERSION=$key_version")
  add_optional_env RUST_LOG
}

common_env
deploy_service "$SERVICE_INVOICE_SENDER" "$SA_SENDER" --no-allow-unauthenticated \
  "$PUSH_SERVICES_INGRESS" 0 "${ENV_PAIRS[@]}"

common_env
ENV_PAIRS+=("PUBSUB_PROJECT_ID=$PROJECT_ID")
add_optional_env STARK_WORKSPACE_ID WEBHOOK_MAX_BODY_BYTES PUBLISH_TIMEOUT_SECONDS
deploy_service "$SERVICE_WEBHOOK_INGESTER" "$SA_INGESTER" --allow-unauthenticated \
  all "$INGESTER_MIN_INSTANCES" "${ENV_PAIRS[@]}"

common_env
add_optional_env PAYOUT_BANK_CODE PAYOUT_BRANCH_CODE PAYOUT_ACCOUNT_NUMBER PAYOUT_NAME \
  PAYOUT_TAX_ID PAYOUT_ACCOUNT_TYPE
deploy_service "$SERVICE_MONEY_SENDER" "$SA_MONEY" --no-allow-unauthenticated \
  "$PUSH_SERVICES_INGRESS" 0 "${ENV_PAIRS[@]}"

step "Who may invoke the private services: $SA_PUSH (Pub/Sub push) only"
for service in "$SERVICE_INVOICE_SENDER" "$SERVICE_MONEY_SENDER"; do
  grant "serviceAccount:$(sa_email "$SA_PUSH")" roles/run.invoker \
    "run services" "$service" "--region=$REGION" "--project=$PROJECT_ID"
done
