#!/usr/bin/env bash
# 70-scheduler.sh: deploys the two Cloud Run jobs and the Cloud Scheduler jobs that start them,
# and pauses a scheduler job once its campaign window is over.
#
# invoice-spammer (every hour, "$SCHEDULE" in $SCHEDULER_TIME_ZONE, job $SCHEDULER_JOB)
#   runs as invoice-spammer with the campaign window in its environment (CAMPAIGN_ID,
#   CAMPAIGN_START, CAMPAIGN_HOURS, amounts); one task, retried up to 3 times (--max-retries=3)
#   when it exits non-zero. Every run publishes the batch of the hour slot it falls in, and a
#   run outside [CAMPAIGN_START, CAMPAIGN_START + CAMPAIGN_HOURS h) publishes nothing and exits 0.
# reconciler (every 15 minutes, job $SCHEDULER_RECONCILER)
#   runs the operator CLI image: `stark-pipeline reconcile --repair --since CAMPAIGN_START`, as
#   the service account reconciler, with the Stark key mounted by version like the services,
#   their Stark and payout variables and PUBSUB_PROJECT_ID. It compares what Stark credited
#   since the campaign started with the payouts made, and republishes the missing ones to
#   paid_invoices (money-sender is idempotent: a repair never pays twice). It exits non-zero
#   when it found a problem, even one it repaired; 90-monitoring.sh alerts after two failed
#   runs within 30 minutes. It is not retried (--max-retries=0): the next run, 15 minutes
#   later, is the retry.
#
# Each scheduler job POSTs to the Cloud Run Admin API, .../jobs/JOB:run, with an OAuth token of
# its own service account (spammer-scheduler, reconciler-scheduler), which holds
# roles/run.invoker on that job only. Updating keeps a job's paused or enabled state:
# re-running this step never resumes a campaign an operator paused.
#
# Cloud Scheduler has no end date. The spammer's window ends at CAMPAIGN_START +
# CAMPAIGN_HOURS h, the reconciler's RECONCILE_HOURS_AFTER (48) hours later; once a window is
# over, this step (and so up.sh) warns that the scheduler job is still enabled and pauses it.
#
# Usage: deploy/70-scheduler.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

where=("--location=$SCHEDULER_LOCATION" "--project=$PROJECT_ID")

# schedule SCHEDULER_JOB JOB SERVICE_ACCOUNT CRON DESCRIPTION
schedule() {
  local scheduler_job=$1 job=$2 account=$3 cron=$4 description=$5
  local target=(
    "--schedule=$cron" "--time-zone=$SCHEDULER_TIME_ZONE"
    "--uri=https://run.googleapis.com/v2/projects/$PROJECT_ID/locations/$REGION/jobs/$job:run"
    --http-method=POST "--oauth-service-account-email=$(sa_email "$account")"
    --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform
    --attempt-deadline=180s --max-retry-attempts=3 --min-backoff=30s
    "--description=$description"
  )
  ensure "scheduler job $scheduler_job" \
    gcloud scheduler jobs describe "$scheduler_job" "${where[@]}" \
    -- gcloud scheduler jobs create http "$scheduler_job" "${where[@]}" "${target[@]}" \
    -- gcloud scheduler jobs update http "$scheduler_job" "${where[@]}" "${target[@]}"
}

# keep_to_window SCHEDULER_JOB END_EPOCH END WHAT: pauses the scheduler job when its window
# is over; otherwise leaves its state as it is.
keep_to_window() {
  local scheduler_job=$1 end_epoch=$2 end=$3 what=$4 state
  state=$(value_of '<state>' gcloud scheduler jobs describe "$scheduler_job" "${where[@]}" '--format=value(state)')
  local pause=(gcloud scheduler jobs pause "$scheduler_job" "${where[@]}")
  if [ "$NOW_EPOCH" -ge "$end_epoch" ]; then
    if $DRY_RUN; then
      plan "only if ENABLED: $what ended at $end" "${pause[@]}"
    elif [ "$state" = ENABLED ]; then
      warn "$what ended at $end, but scheduler job $scheduler_job is still enabled: pausing it"
      run "${pause[@]}" >/dev/null
    else
      say "scheduler job $scheduler_job is $state: $what ended at $end"
    fi
    return 0
  fi
  if [ "$state" = PAUSED ]; then
    warn "scheduler job $scheduler_job is PAUSED (left as it was); to resume it: gcloud scheduler jobs resume $scheduler_job --location=$SCHEDULER_LOCATION --project=$PROJECT_ID"
  fi
  say "$what ends at $end; run up.sh (or this step) after that to pause $scheduler_job"
}

step "Cloud Run job $JOB_SPAMMER"
ENV_PAIRS=(LOG_FORMAT=json "GOOGLE_CLOUD_PROJECT=$PROJECT_ID" "PUBSUB_PROJECT_ID=$PROJECT_ID")
campaign_env_pairs
add_optional_env PUBLISH_CONCURRENCY RUST_LOG
run gcloud run jobs deploy "$JOB_SPAMMER" "--project=$PROJECT_ID" "--region=$REGION" \
  "--image=$(image_ref "$JOB_SPAMMER")" "--service-account=$(sa_email "$SA_SPAMMER")" \
  --tasks=1 --max-retries=3 --task-timeout=600s "--cpu=$SERVICE_CPU" "--memory=$SERVICE_MEMORY" \
  "--labels=$LABELS" "$(env_vars_flag "${ENV_PAIRS[@]}")"

step "Who may run $JOB_SPAMMER: $SA_SCHEDULER only"
grant "serviceAccount:$(sa_email "$SA_SCHEDULER")" roles/run.invoker "run jobs" "$JOB_SPAMMER" \
  "--region=$REGION" "--project=$PROJECT_ID"

step "Cloud Scheduler job $SCHEDULER_JOB ($SCHEDULE, $SCHEDULER_TIME_ZONE)"
schedule "$SCHEDULER_JOB" "$JOB_SPAMMER" "$SA_SCHEDULER" "$SCHEDULE" \
  "Runs the invoice-spammer job for campaign $CAMPAIGN_ID"
keep_to_window "$SCHEDULER_JOB" "$CAMPAIGN_END_EPOCH" "$CAMPAIGN_END_AT" \
  "campaign $CAMPAIGN_ID ($CAMPAIGN_HOURS hourly slots from $CAMPAIGN_START)"

step "Cloud Run job $JOB_RECONCILER (stark-pipeline reconcile --repair)"
key_version=$(stark_key_version)
ENV_PAIRS=(LOG_FORMAT=json "GOOGLE_CLOUD_PROJECT=$PROJECT_ID" "PUBSUB_PROJECT_ID=$PROJECT_ID")
campaign_env_pairs
stark_env_pairs
payout_env_pairs
add_optional_env RUST_LOG
network_flags
run gcloud run jobs deploy "$JOB_RECONCILER" "--project=$PROJECT_ID" "--region=$REGION" \
  "--image=$(image_ref "$CLI_IMAGE")" "--service-account=$(sa_email "$SA_RECONCILER")" \
  "--args=reconcile,--repair,--since=$CAMPAIGN_START" \
  --tasks=1 --max-retries=0 --task-timeout=840s "--cpu=$SERVICE_CPU" "--memory=$SERVICE_MEMORY" \
  "--labels=$LABELS" "$(env_vars_flag "${ENV_PAIRS[@]}")" "$(secret_flag "$key_version")" \
  "${NETWORK_FLAGS[@]}"

step "Who may run $JOB_RECONCILER: $SA_RECONCILER_SCHEDULER only"
grant "serviceAccount:$(sa_email "$SA_RECONCILER_SCHEDULER")" roles/run.invoker "run jobs" "$JOB_RECONCILER" \
  "--region=$REGION" "--project=$PROJECT_ID"

step "Cloud Scheduler job $SCHEDULER_RECONCILER ($RECONCILE_SCHEDULE)"
schedule "$SCHEDULER_RECONCILER" "$JOB_RECONCILER" "$SA_RECONCILER_SCHEDULER" "$RECONCILE_SCHEDULE" \
  "Runs stark-pipeline reconcile --repair for campaign $CAMPAIGN_ID"
keep_to_window "$SCHEDULER_RECONCILER" "$RECONCILE_END_EPOCH" "$RECONCILE_END_AT" \
  "the reconciliation of campaign $CAMPAIGN_ID ($RECONCILE_HOURS_AFTER h after its end)"
