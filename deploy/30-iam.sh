#!/usr/bin/env bash
# 30-iam.sh: creates one service account per identity, and grants the one role that sits on
# a service account rather than on a resource.
#
#   invoice-spammer     the job's identity        -> publisher on pending_invoices (60-pubsub.sh)
#   invoice-sender      the service's identity    -> reads the Stark key secret (40-secrets.sh)
#   webhook-ingester    the service's identity    -> reads the Stark key secret (40-secrets.sh),
#                                                    publisher on paid_invoices (60-pubsub.sh)
#   money-sender        the service's identity    -> reads the Stark key secret (40-secrets.sh)
#   pubsub-push         identity of push tokens   -> invoker of invoice-sender and money-sender (50-services.sh)
#   spammer-scheduler   identity of the scheduler -> invoker of the job (70-scheduler.sh)
#
# Every other grant is made on the one resource it concerns, by the step that creates that
# resource; nothing is granted at project level. Here: the Pub/Sub service agent may mint OIDC
# tokens as pubsub-push (roles/iam.serviceAccountTokenCreator on that account only), which
# authenticated push needs.
#
# Usage: deploy/30-iam.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

describe_of() {
  case $1 in
    "$SA_SPAMMER") echo "Runs the invoice-spammer job; publishes to pending_invoices" ;;
    "$SA_SENDER") echo "Runs invoice-sender; reads the Stark key" ;;
    "$SA_INGESTER") echo "Runs webhook-ingester; reads the Stark key, publishes to paid_invoices" ;;
    "$SA_MONEY") echo "Runs money-sender; reads the Stark key" ;;
    "$SA_PUSH") echo "Identity of Pub/Sub push requests; invokes invoice-sender and money-sender" ;;
    "$SA_SCHEDULER") echo "Identity of Cloud Scheduler; runs the invoice-spammer job" ;;
  esac
}

step "Service accounts"
for name in $SERVICE_ACCOUNTS; do
  email=$(sa_email "$name")
  ensure "service account $email" \
    gcloud iam service-accounts describe "$email" "--project=$PROJECT_ID" \
    -- gcloud iam service-accounts create "$name" "--project=$PROJECT_ID" \
    "--display-name=stark-pipeline $name" "--description=$(describe_of "$name")"
done

step "Pub/Sub service agent may sign push tokens as $SA_PUSH"
number=$(project_number)
grant "serviceAccount:$(pubsub_agent "$number")" roles/iam.serviceAccountTokenCreator \
  "iam service-accounts" "$(sa_email "$SA_PUSH")" "--project=$PROJECT_ID"
