#!/usr/bin/env bash
# 90-monitoring.sh: tells someone when the pipeline cannot heal by itself. Sets up, in Cloud
# Monitoring and Cloud Logging:
#
#   notification channel "stark-pipeline alerts": e-mail to ALERT_EMAIL
#   log-based metrics stark_pipeline_<event>: counters of the services' log lines whose
#     jsonPayload.event is payout_refused_not_ours, payout_rejected, invoice_rejected,
#     webhook_rejected (alerted on), credited_invoice_published and transfer_created (charted)
#   alert policies, one per file of deploy/monitoring/policies/ (each says in its
#     documentation what it means and what to do; deploy/README.md, Runbook, says more):
#       dead-letters             a message waits in a dead-letter subscription for a minute
#       push-backlog             a push subscription's oldest unacked message is over 15 min old
#       job-failed               an execution of invoice-spammer failed, or two of reconciler
#                                within 30 minutes (it exits 1 even after a repair)
#       log-<event>              a log line with one of the four alerting events
#   dashboard "stark-pipeline" (deploy/monitoring/dashboard.json): credited vs paid out per
#     hour, the ingester's requests by answer code, push latency, push backlog, dead letters,
#     refusals, job executions
#
# Alert policies, the channel and the dashboard are found by display name (the top-level
# "displayName" of their file) and updated when they exist, created otherwise; log metrics by
# name. Alert policies use `gcloud alpha monitoring policies` (there is no GA command) and
# the channel `gcloud beta monitoring channels`: `gcloud components install alpha beta` if
# your gcloud lacks them.
#
# Usage: deploy/90-monitoring.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

p="--project=$PROJECT_ID"

step "APIs: Cloud Monitoring, Cloud Logging"
run gcloud services enable monitoring.googleapis.com logging.googleapis.com "$p"

step "Notification channel \"$ALERT_CHANNEL_NAME\" (e-mail to $ALERT_EMAIL)"
channels=(gcloud beta monitoring channels list "$p" "--filter=displayName=\"$ALERT_CHANNEL_NAME\""
  '--format=value(name,displayName)')
ensure_named "notification channel \"$ALERT_CHANNEL_NAME\"" '<notification-channel>' "$ALERT_CHANNEL_NAME" \
  "${channels[@]}" \
  -- gcloud beta monitoring channels create "$p" "--display-name=$ALERT_CHANNEL_NAME" --type=email \
  "--channel-labels=email_address=$ALERT_EMAIL" "--user-labels=$LABELS" \
  "--description=Alerts of the Stark Bank invoice to payout pipeline (deploy/90-monitoring.sh)" \
  -- gcloud beta monitoring channels update '{}' "$p" "--update-channel-labels=email_address=$ALERT_EMAIL"
if $DRY_RUN; then
  channel='<notification-channel>'
else
  list_names "$ALERT_CHANNEL_NAME" "${channels[@]}"
  [ ${#NAMES[@]} -gt 0 ] || die "notification channel \"$ALERT_CHANNEL_NAME\" was not found after its creation"
  channel=${NAMES[0]}
fi

step "Log-based metrics"
for event in $LOG_METRIC_EVENTS; do
  metric=$LOG_METRIC_PREFIX$event
  filter="resource.type=\"cloud_run_revision\" AND jsonPayload.event=\"$event\""
  description="Log lines of the stark-pipeline services with event $event"
  ensure "log metric $metric" \
    gcloud logging metrics describe "$metric" "$p" \
    -- gcloud logging metrics create "$metric" "$p" "--description=$description" "--log-filter=$filter" \
    -- gcloud logging metrics update "$metric" "$p" "--description=$description" "--log-filter=$filter"
done

step "Alert policies (deploy/monitoring/policies/), notifying $ALERT_EMAIL"
for file in "$MONITORING_DIR"/policies/*.json; do
  display=$(display_name "$file")
  ensure_named "alert policy \"$display\"" '<alert-policy>' "$display" \
    gcloud alpha monitoring policies list "$p" "--filter=displayName=\"$display\"" \
    '--format=value(name,displayName)' \
    -- gcloud alpha monitoring policies create "$p" "--policy-from-file=$file" \
    "--notification-channels=$channel" \
    -- gcloud alpha monitoring policies update '{}' "$p" "--policy-from-file=$file" \
    "--set-notification-channels=$channel"
done

step "Dashboard"
file=$MONITORING_DIR/dashboard.json
display=$(display_name "$file")
ensure_named "dashboard \"$display\"" '<dashboard>' "$display" \
  gcloud monitoring dashboards list "$p" "--filter=displayName=\"$display\"" \
  '--format=value(name,displayName)' \
  -- gcloud monitoring dashboards create "$p" "--config-from-file=$file" \
  -- gcloud monitoring dashboards update '{}' "$p" "--config-from-file=$file"
say "https://console.cloud.google.com/monitoring/dashboards?project=$PROJECT_ID"
