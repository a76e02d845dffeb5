#!/usr/bin/env bash
# teardown.sh: deletes what deploy/up.sh created: the alert policies, dashboard, notification
# channel and log metrics, the scheduler jobs, the Cloud Run jobs and services, the Pub/Sub
# subscriptions and topics (with any message still in them, dead letters included), the Stark
# key secret, the service accounts, the Artifact Registry repository with its images, and last
# the egress network resources that 45-egress.sh made.
#
# Each resource is described first and deleted only if present, so it can be re-run. It asks
# you to type the project id unless --yes is given; without a terminal it refuses to run
# without --yes. It leaves the APIs enabled, the Cloud Build staging bucket, and the webhook
# registered at Stark Bank: delete it there so that Stark stops posting to a dead URL
# (stark-pipeline webhook list, then stark-pipeline webhook delete ID, with the STARK_*
# variables set).
#
# With static egress, Cloud Run keeps the subnet in use (serverless addresses) for 1 to 2 hours
# after the services that used Direct VPC egress are deleted. Then everything else is deleted,
# the subnet and network are kept, and teardown.sh exits with code 75: run it again later.
#
# Usage: deploy/teardown.sh [--dry-run] [--config FILE] [--yes] [--keep-images]
#   --keep-images  keep the Artifact Registry repository and its images
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

keep_images=false
args=()
for arg in "$@"; do
  if [ "$arg" = --keep-images ]; then keep_images=true; else args+=("$arg"); fi
done
init ${args[@]+"${args[@]}"}

if ! $DRY_RUN && ! $ASSUME_YES; then
  if [ ! -t 0 ]; then
    die "refusing to delete the pipeline from $PROJECT_ID without --yes (no terminal to confirm on)"
  fi
  printf 'This deletes the Stark pipeline from project %s (%s), messages and dead letters included.\n' "$PROJECT_ID" "$REGION" >&2
  printf 'Type the project id to confirm: ' >&2
  read -r answer
  [ "$answer" = "$PROJECT_ID" ] || die "not confirmed; nothing deleted"
fi

p="--project=$PROJECT_ID"
r="--region=$REGION"

step "Monitoring"
for file in "$MONITORING_DIR"/policies/*.json "$MONITORING_DIR"/dashboard.json; do
  display=$(display_name "$file")
  case $file in
    */dashboard.json)
      absent_named "dashboard \"$display\"" '<dashboard>' "$display" \
        gcloud monitoring dashboards list "$p" "--filter=displayName=\"$display\"" '--format=value(name,displayName)' \
        -- gcloud monitoring dashboards delete '{}' "$p" --quiet
      ;;
    *)
      absent_named "alert policy \"$display\"" '<alert-policy>' "$display" \
        gcloud alpha monitoring policies list "$p" "--filter=displayName=\"$display\"" '--format=value(name,displayName)' \
        -- gcloud alpha monitoring policies delete '{}' "$p" --quiet
      ;;
  esac
done
absent_named "notification channel \"$ALERT_CHANNEL_NAME\"" '<notification-channel>' "$ALERT_CHANNEL_NAME" \
  gcloud beta monitoring channels list "$p" "--filter=displayName=\"$ALERT_CHANNEL_NAME\"" '--format=value(name,displayName)' \
  -- gcloud beta monitoring channels delete '{}' "$p" --force --quiet
for event in $LOG_METRIC_EVENTS; do
  ensure_absent "log metric $LOG_METRIC_PREFIX$event" \
    gcloud logging metrics describe "$LOG_METRIC_PREFIX$event" "$p" \
    -- gcloud logging metrics delete "$LOG_METRIC_PREFIX$event" "$p" --quiet
done

step "Schedulers and jobs"
for scheduler_job in "$SCHEDULER_JOB" "$SCHEDULER_RECONCILER"; do
  ensure_absent "scheduler job $scheduler_job" \
    gcloud scheduler jobs describe "$scheduler_job" "--location=$SCHEDULER_LOCATION" "$p" \
    -- gcloud scheduler jobs delete "$scheduler_job" "--location=$SCHEDULER_LOCATION" "$p" --quiet
done
for job in "$JOB_SPAMMER" "$JOB_RECONCILER"; do
  ensure_absent "job $job" \
    gcloud run jobs describe "$job" "$r" "$p" \
    -- gcloud run jobs delete "$job" "$r" "$p" --quiet
done

step "Services"
for service in "$SERVICE_WEBHOOK_INGESTER" "$SERVICE_INVOICE_SENDER" "$SERVICE_MONEY_SENDER"; do
  ensure_absent "service $service" \
    gcloud run services describe "$service" "$r" "$p" \
    -- gcloud run services delete "$service" "$r" "$p" --quiet
done

step "Pub/Sub"
# Subscriptions first: deleting a topic orphans its subscriptions instead of deleting them.
for subscription in "$SUB_PENDING" "$SUB_PAID" "$(dead_letter "$TOPIC_PENDING")" "$(dead_letter "$TOPIC_PAID")"; do
  ensure_absent "subscription $subscription" \
    gcloud pubsub subscriptions describe "$subscription" "$p" \
    -- gcloud pubsub subscriptions delete "$subscription" "$p" --quiet
done
for topic in "$TOPIC_PENDING" "$TOPIC_PAID" "$(dead_letter "$TOPIC_PENDING")" "$(dead_letter "$TOPIC_PAID")"; do
  ensure_absent "topic $topic" \
    gcloud pubsub topics describe "$topic" "$p" \
    -- gcloud pubsub topics delete "$topic" "$p" --quiet
done

step "Secret"
ensure_absent "secret $STARK_KEY_SECRET" \
  gcloud secrets describe "$STARK_KEY_SECRET" "$p" \
  -- gcloud secrets delete "$STARK_KEY_SECRET" "$p" --quiet

step "Service accounts"
# Bindings outside what teardown deletes (20-iam.sh, 30-registry-images.sh), which would
# otherwise outlive their account.
revoke "serviceAccount:$(sa_email "$SA_BUILDER")" roles/logging.logWriter projects "$PROJECT_ID" "$p"
revoke "serviceAccount:$(sa_email "$SA_BUILDER")" roles/storage.objectViewer "storage buckets" "$BUILD_BUCKET" "$p"
for name in $SERVICE_ACCOUNTS; do
  email=$(sa_email "$name")
  ensure_absent "service account $email" \
    gcloud iam service-accounts describe "$email" "$p" \
    -- gcloud iam service-accounts delete "$email" "$p" --quiet
done

if $keep_images; then
  step "Artifact Registry repository $REPOSITORY: kept (--keep-images)"
else
  step "Artifact Registry repository"
  ensure_absent "repository $REPOSITORY" \
    gcloud artifacts repositories describe "$REPOSITORY" "--location=$REGION" "$p" \
    -- gcloud artifacts repositories delete "$REPOSITORY" "--location=$REGION" "$p" --quiet
fi

step "Egress network (made by 45-egress.sh when STATIC_EGRESS=true), last"
say "a subnet still in use by Cloud Run (1 to 2 hours after its services are deleted) is kept with its network, and teardown.sh exits $EXIT_RUN_AGAIN_LATER: run it again later"
subnet_in_use=false
# delete_if_made_here LABEL DESCRIBE... -- DELETE...
# Deletes a network resource only if its description is $EGRESS_MARK, i.e. 45-egress.sh made
# it: a network the configuration merely pointed at (EGRESS_NETWORK=default...) is kept.
delete_if_made_here() {
  local label=$1 arg part=0
  shift
  local describe=() delete=()
  for arg in "$@"; do
    if [ "$arg" = -- ]; then part=1; elif [ $part -eq 0 ]; then describe+=("$arg"); else delete+=("$arg"); fi
  done
  describe+=('--format=value(description)')
  if $DRY_RUN; then
    plan '' "${describe[@]}"
    plan "only if $label exists and its description says 45-egress.sh made it" "${delete[@]}"
    return 0
  fi
  local description
  if ! description=$("${describe[@]}" 2>/dev/null); then
    say "$label: already absent"
  elif [ "$description" != "$EGRESS_MARK" ]; then
    say "$label: not made by 45-egress.sh (description \"$description\"): kept"
  else
    say "deleting $label"
    local out
    printf '+ %s\n' "$(shell_quote "${delete[@]}")" >&2
    if out=$("${delete[@]}" 2>&1); then
      [ -z "$out" ] || printf '%s\n' "$out" >&2
      return 0
    fi
    printf '%s\n' "$out" >&2
    case $out in
      *"already being used by"* | *"resourceInUseByAnotherResource"* | *"is in use"* | *"being used by"*)
        if [ "${delete[3]}" = subnets ]; then
          subnet_in_use=true
          warn "$label is still in use: Cloud Run releases the addresses of Direct VPC egress 1 to 2 hours after the services are deleted"
          return 0
        fi
        ;;
    esac
    die "could not delete $label"
  fi
}
ensure_absent "NAT $EGRESS_NAT" \
  gcloud compute routers nats describe "$EGRESS_NAT" "--router=$EGRESS_ROUTER" "$r" "$p" \
  -- gcloud compute routers nats delete "$EGRESS_NAT" "--router=$EGRESS_ROUTER" "$r" "$p" --quiet
delete_if_made_here "router $EGRESS_ROUTER" \
  gcloud compute routers describe "$EGRESS_ROUTER" "$r" "$p" \
  -- gcloud compute routers delete "$EGRESS_ROUTER" "$r" "$p" --quiet
delete_if_made_here "address $EGRESS_ADDRESS" \
  gcloud compute addresses describe "$EGRESS_ADDRESS" "$r" "$p" \
  -- gcloud compute addresses delete "$EGRESS_ADDRESS" "$r" "$p" --quiet
delete_if_made_here "subnet $EGRESS_SUBNET" \
  gcloud compute networks subnets describe "$EGRESS_SUBNET" "$r" "$p" \
  -- gcloud compute networks subnets delete "$EGRESS_SUBNET" "$r" "$p" --quiet
if $subnet_in_use; then
  say "network $EGRESS_NETWORK: kept while its subnet is"
else
  delete_if_made_here "network $EGRESS_NETWORK" \
    gcloud compute networks describe "$EGRESS_NETWORK" "$p" \
    -- gcloud compute networks delete "$EGRESS_NETWORK" "$p" --quiet
fi

step "Left in place"
say "the APIs stay enabled, and so does Cloud Build's staging bucket $BUILD_BUCKET (gcloud storage rm --recursive $BUILD_BUCKET/source to empty it)"
say "the webhook stays registered at Stark Bank; to delete it:"
say "  STARK_ACCESS_ID=$STARK_ACCESS_ID STARK_ENVIRONMENT=$STARK_ENVIRONMENT STARK_PRIVATE_KEY_FILE=$STARK_PRIVATE_KEY_FILE stark-pipeline webhook list"
say "  ... stark-pipeline webhook delete ID   (the webhook whose URL ends in /webhook)"

if $subnet_in_use; then
  step "Not finished: subnet $EGRESS_SUBNET is still in use"
  warn "everything else is deleted; the subnet $EGRESS_SUBNET and network $EGRESS_NETWORK stay until Cloud Run releases the subnet (1 to 2 hours after the services were deleted): run deploy/teardown.sh again later"
  exit "$EXIT_RUN_AGAIN_LATER"
fi
