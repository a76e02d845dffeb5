#!/usr/bin/env bash
# up.sh: deploys the whole pipeline to Google Cloud, running every step in order:
#
#   10-apis.sh             enable the APIs
#   20-iam.sh              one service account per identity (Cloud Build's included)
#   30-registry-images.sh  Artifact Registry repository; build and push the images
#   40-secrets.sh          the Stark private key in Secret Manager, readable by the signing services
#   45-egress.sh           (STATIC_EGRESS=true) VPC, Cloud NAT and a reserved outbound IP
#   50-services.sh         invoice-sender, webhook-ingester, money-sender on Cloud Run
#   60-pubsub.sh           topics and push subscriptions (stark-pipeline provision), Pub/Sub IAM
#   70-scheduler.sh        the invoice-spammer job (hourly) and the reconciler job (every 15
#                          minutes) with their Cloud Scheduler triggers, paused once their
#                          campaign window is over
#   80-webhook.sh          register the ingester's URL at Stark Bank
#   90-monitoring.sh       alert e-mails to ALERT_EMAIL, log-based metrics, alert policies, dashboard
#
# Every step is idempotent (it describes before it creates, and updates what exists), so up.sh
# can be re-run after a failure or a change of configuration, and each step can be run alone.
#
# Usage: deploy/up.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

step_args=("--config=$CONFIG_FILE")
if $DRY_RUN; then
  step_args+=(--dry-run)
fi
for script in 10-apis.sh 20-iam.sh 30-registry-images.sh 40-secrets.sh 45-egress.sh \
  50-services.sh 60-pubsub.sh 70-scheduler.sh 80-webhook.sh 90-monitoring.sh; do
  bash "$DEPLOY_DIR/$script" "${step_args[@]}"
done

if $DRY_RUN; then
  step "Dry run: nothing was executed"
  exit 0
fi

step "Deployed to $PROJECT_ID ($REGION)"
for service in "$SERVICE_INVOICE_SENDER" "$SERVICE_WEBHOOK_INGESTER" "$SERVICE_MONEY_SENDER"; do
  say "$service: $(service_url "$service")"
done
say "Stark webhook: $(service_url "$SERVICE_WEBHOOK_INGESTER")/webhook"
say "job $JOB_SPAMMER runs '$SCHEDULE' ($SCHEDULER_TIME_ZONE) for campaign $CAMPAIGN_ID: $CAMPAIGN_HOURS slots from $CAMPAIGN_START to $CAMPAIGN_END_AT"
say "job $JOB_RECONCILER runs every 15 minutes until $RECONCILE_END_AT ($RECONCILE_HOURS_AFTER h after the campaign)"
if [ "$NOW_EPOCH" -lt "$RECONCILE_END_EPOCH" ]; then
  say "Cloud Scheduler has no end date: run up.sh (or 70-scheduler.sh) again after $RECONCILE_END_AT to pause both"
fi
if is_true "$STATIC_EGRESS"; then
  ip=$(value_of '<egress-ip>' gcloud compute addresses describe "$EGRESS_ADDRESS" "--region=$REGION" \
    "--project=$PROJECT_ID" '--format=value(address)')
  say "outbound IP to allow-list at Stark Bank: $ip"
fi
say "alerts: e-mail to $ALERT_EMAIL; dashboard \"stark-pipeline\" in Cloud Monitoring"
say "logs and runbook: see deploy/README.md, \"Watch it run\" and \"Runbook\""
