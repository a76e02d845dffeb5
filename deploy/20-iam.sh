#!/usr/bin/env bash
# 20-iam.sh: creates one service account per identity, and grants the roles that sit on a
# service account or on the project rather than on a resource of the pipeline.
#
#   invoice-spammer       the job's identity        -> publisher on pending_invoices (60-pubsub.sh)
#   invoice-sender        the service's identity    -> reads the Stark key secret (40-secrets.sh)
#   webhook-ingester      the service's identity    -> reads the Stark key secret (40-secrets.sh),
#                                                      publisher on paid_invoices (60-pubsub.sh)
#   money-sender          the service's identity    -> reads the Stark key secret (40-secrets.sh)
#   pubsub-push           identity of push tokens   -> invoker of invoice-sender and money-sender (50-services.sh)
#   spammer-scheduler     identity of the scheduler -> invoker of the invoice-spammer job (70-scheduler.sh)
#   reconciler            the reconciler's identity -> reads the Stark key secret (40-secrets.sh),
#                                                      publisher on paid_invoices (60-pubsub.sh)
#   reconciler-scheduler  identity of the scheduler -> invoker of the reconciler job (70-scheduler.sh)
#   image-builder         identity of Cloud Build   -> writer on the image repository, reader of
#                                                      the build's source bucket (30-registry-images.sh)
#
# Every other grant is made on the one resource it concerns, by the step that creates that
# resource. Here:
# - the Pub/Sub service agent may mint OIDC tokens as pubsub-push
#   (roles/iam.serviceAccountTokenCreator on that account only), which authenticated push needs;
# - with BUILD_WITH=cloudbuild, image-builder may write the build's logs
#   (roles/logging.logWriter), the one role granted at project level: Cloud Logging checks it
#   there. Builds run as image-builder because new projects no longer give Cloud Build's default
#   service account the roles a build needs.
#
# Usage: deploy/20-iam.sh [--dry-run] [--config FILE]
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
    "$SA_RECONCILER") echo "Runs the reconciler job; reads the Stark key, publishes to paid_invoices" ;;
    "$SA_RECONCILER_SCHEDULER") echo "Identity of Cloud Scheduler; runs the reconciler job" ;;
    "$SA_BUILDER") echo "Identity of Cloud Build; pushes the pipeline's images" ;;
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

if [ "$BUILD_WITH" = cloudbuild ]; then
  step "Cloud Build, as $SA_BUILDER, may write its logs"
  grant "serviceAccount:$(sa_email "$SA_BUILDER")" roles/logging.logWriter \
    projects "$PROJECT_ID" "--project=$PROJECT_ID"
fi
