#!/usr/bin/env bash
# 70-scheduler.sh: deploys the invoice-spammer Cloud Run job and the Cloud Scheduler job that
# runs it every hour.
#
# The job runs as invoice-spammer with the campaign window in its environment (CAMPAIGN_ID,
# CAMPAIGN_START, CAMPAIGN_HOURS, amounts); one task, retried up to 3 times (--max-retries=3)
# when it exits non-zero. Every run publishes the batch of the hour slot it falls in, and a run
# outside [CAMPAIGN_START, CAMPAIGN_START + CAMPAIGN_HOURS h) publishes nothing and exits 0:
# the campaign stops issuing by itself after CAMPAIGN_HOURS hours, with the scheduler still on.
#
# The scheduler job ($SCHEDULER_JOB, cron "$SCHEDULE" in $SCHEDULER_TIME_ZONE) POSTs to the
# Cloud Run Admin API, .../jobs/invoice-spammer:run, with an OAuth token of spammer-scheduler,
# which holds roles/run.invoker on this job only. Updating keeps the job's paused or enabled
# state: re-running this step never resumes a campaign an operator paused.
#
# Usage: deploy/70-scheduler.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

step "Cloud Run job $JOB_SPAMMER"
ENV_PAIRS=(LOG_FORMAT=json "GOOGLE_CLOUD_PROJECT=$PROJECT_ID" "PUBSUB_PROJECT_ID=$PROJECT_ID"
  "CAMPAIGN_ID=$CAMPAIGN_ID" "CAMPAIGN_START=$CAMPAIGN_START" "CAMPAIGN_HOURS=$CAMPAIGN_HOURS"
  "INVOICE_AMOUNT_MIN_CENTS=$INVOICE_AMOUNT_MIN_CENTS" "INVOICE_AMOUNT_MAX_CENTS=$INVOICE_AMOUNT_MAX_CENTS")
add_optional_env INVOICE_DUE_HOURS INVOICE_EXPIRATION_SECONDS PUBLISH_CONCURRENCY RUST_LOG
run gcloud run jobs deploy "$JOB_SPAMMER" "--project=$PROJECT_ID" "--region=$REGION" \
  "--image=$(image_ref "$JOB_SPAMMER")" "--service-account=$(sa_email "$SA_SPAMMER")" \
  --tasks=1 --max-retries=3 --task-timeout=600s "--cpu=$SERVICE_CPU" "--memory=$SERVICE_MEMORY" \
  "--labels=$LABELS" "$(env_vars_flag "${ENV_PAIRS[@]}")"

step "Who may run the job: $SA_SCHEDULER only"
scheduler_sa=$(sa_email "$SA_SCHEDULER")
grant "serviceAccount:$scheduler_sa" roles/run.invoker "run jobs" "$JOB_SPAMMER" \
  "--region=$REGION" "--project=$PROJECT_ID"

step "Cloud Scheduler job $SCHEDULER_JOB ($SCHEDULE, $SCHEDULER_TIME_ZONE)"
target=(
  "--schedule=$SCHEDULE" "--time-zone=$SCHEDULER_TIME_ZONE"
  "--uri=https://run.googleapis.com/v2/projects/$PROJECT_ID/locations/$REGION/jobs/$JOB_SPAMMER:run"
  --http-method=POST "--oauth-service-account-email=$scheduler_sa"
  --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform
  --attempt-deadline=180s --max-retry-attempts=3 --min-backoff=30s
  "--description=Runs the invoice-spammer job for campaign $CAMPAIGN_ID"
)
where=("--location=$SCHEDULER_LOCATION" "--project=$PROJECT_ID")
ensure "scheduler job $SCHEDULER_JOB" \
  gcloud scheduler jobs describe "$SCHEDULER_JOB" "${where[@]}" \
  -- gcloud scheduler jobs create http "$SCHEDULER_JOB" "${where[@]}" "${target[@]}" \
  -- gcloud scheduler jobs update http "$SCHEDULER_JOB" "${where[@]}" "${target[@]}"

state=$(value_of '<state>' gcloud scheduler jobs describe "$SCHEDULER_JOB" "${where[@]}" '--format=value(state)')
if [ "$state" = PAUSED ]; then
  warn "scheduler job $SCHEDULER_JOB is PAUSED (left as it was); to resume the campaign: gcloud scheduler jobs resume $SCHEDULER_JOB --location=$SCHEDULER_LOCATION --project=$PROJECT_ID"
fi
say "campaign $CAMPAIGN_ID: $CAMPAIGN_HOURS hourly slots from $CAMPAIGN_START; the first scheduled run is at the next '$SCHEDULE'"
