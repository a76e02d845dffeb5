#!/usr/bin/env bash
# 60-pubsub.sh: applies the Pub/Sub topology with `stark-pipeline provision`, grants the
# topic- and subscription-level roles, and checks that the subscriptions came out as the
# pipeline needs them.
#
# provision (idempotent; creates what is missing, updates what differs) is given:
#   --invoice-sender-url / --money-sender-url   push endpoints: each service's URL + /push
#   --push-service-account                      pubsub-push: pushes carry its OIDC token
#   --audience-invoice-sender / --audience-money-sender
#                                               the bare service URLs, the audience Cloud Run checks
#   --max-delivery-attempts                     $MAX_DELIVERY_ATTEMPTS (default 100, Pub/Sub's
#                                               maximum), then <topic>-dead-letter
#   --min-backoff-seconds / --max-backoff-seconds
#                                               the retry backoff, 10 s doubling up to 600 s by
#                                               default: 100 attempts retry for about 16 hours
# and by itself sets the 60 s ack deadline, the dead-letter topics with their pull
# subscriptions, 7-day retention of acked messages on the push subscriptions (the replay
# window) and 31-day retention on the dead-letter subscriptions.
#
# IAM (provision does none):
#   invoice-spammer   roles/pubsub.publisher on pending_invoices only
#   webhook-ingester  roles/pubsub.publisher on paid_invoices only
#   reconciler        roles/pubsub.publisher on both topics (reconcile --repair republishes
#                     payouts and invoice requests) and roles/pubsub.subscriber on both
#                     dead-letter subscriptions (it drains the letters whose cause is gone)
#   Pub/Sub service agent: roles/pubsub.publisher on both dead-letter topics and
#     roles/pubsub.subscriber on both push subscriptions, without which dead-lettering fails
#
# The check reads each subscription back and stops with an error if an endpoint, the OIDC
# identity or audience, the ack deadline, the retry backoff, the dead-letter policy or the
# retention is not what is expected.
#
# Usage: deploy/60-pubsub.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

push_sa=$(sa_email "$SA_PUSH")

step "Pub/Sub topology"
sender_url=$(service_url "$SERVICE_INVOICE_SENDER")
money_url=$(service_url "$SERVICE_MONEY_SENDER")
run_cli provision "--project=$PROJECT_ID" \
  "--invoice-sender-url=$sender_url/push" "--money-sender-url=$money_url/push" \
  "--push-service-account=$push_sa" \
  "--audience-invoice-sender=$sender_url" "--audience-money-sender=$money_url" \
  "--max-delivery-attempts=$MAX_DELIVERY_ATTEMPTS" \
  "--min-backoff-seconds=$MIN_BACKOFF_SECONDS" "--max-backoff-seconds=$MAX_BACKOFF_SECONDS"

step "Who may publish, and what the Pub/Sub service agent may do"
grant "serviceAccount:$(sa_email "$SA_SPAMMER")" roles/pubsub.publisher \
  "pubsub topics" "$TOPIC_PENDING" "--project=$PROJECT_ID"
grant "serviceAccount:$(sa_email "$SA_INGESTER")" roles/pubsub.publisher \
  "pubsub topics" "$TOPIC_PAID" "--project=$PROJECT_ID"
for topic in "$TOPIC_PENDING" "$TOPIC_PAID"; do
  grant "serviceAccount:$(sa_email "$SA_RECONCILER")" roles/pubsub.publisher \
    "pubsub topics" "$topic" "--project=$PROJECT_ID"
  grant "serviceAccount:$(sa_email "$SA_RECONCILER")" roles/pubsub.subscriber \
    "pubsub subscriptions" "$(dead_letter "$topic")" "--project=$PROJECT_ID"
done
number=$(project_number)
agent="serviceAccount:$(pubsub_agent "$number")"
for topic in "$TOPIC_PENDING" "$TOPIC_PAID"; do
  grant "$agent" roles/pubsub.publisher "pubsub topics" "$(dead_letter "$topic")" "--project=$PROJECT_ID"
done
for subscription in "$SUB_PENDING" "$SUB_PAID"; do
  grant "$agent" roles/pubsub.subscriber "pubsub subscriptions" "$subscription" "--project=$PROJECT_ID"
done

step "Check the subscriptions"
# check_subscription NAME FIELDS EXPECTED: FIELDS are read with gcloud's value format, joined by
# '|'; compared case-insensitively (gcloud prints booleans as True/False).
check_subscription() {
  local name=$1 fields=$2 expected=$3 actual
  actual=$(value_of "<settings of $name>" gcloud pubsub subscriptions describe "$name" \
    "--project=$PROJECT_ID" "--format=value[separator=|]($fields)")
  if $DRY_RUN; then
    say "expected $fields = $expected"
    return 0
  fi
  if [ "$(printf '%s' "$actual" | tr '[:upper:]' '[:lower:]')" != "$(printf '%s' "$expected" | tr '[:upper:]' '[:lower:]')" ]; then
    die "subscription $name is not as the pipeline needs it:
  fields:   $fields
  expected: $expected
  actual:   $actual
(stark-pipeline provision should have set these; see deploy/README.md)"
  fi
  say "$name: as expected"
}

push_fields=topic,pushConfig.pushEndpoint,pushConfig.oidcToken.serviceAccountEmail,pushConfig.oidcToken.audience,ackDeadlineSeconds,retryPolicy.minimumBackoff,retryPolicy.maximumBackoff,deadLetterPolicy.deadLetterTopic,deadLetterPolicy.maxDeliveryAttempts,messageRetentionDuration,retainAckedMessages
pull_fields=topic,messageRetentionDuration,retainAckedMessages
topics=projects/$PROJECT_ID/topics
delivery="$ACK_DEADLINE_SECONDS|${MIN_BACKOFF_SECONDS}s|${MAX_BACKOFF_SECONDS}s"

check_subscription "$SUB_PENDING" "$push_fields" \
  "$topics/$TOPIC_PENDING|$sender_url/push|$push_sa|$sender_url|$delivery|$topics/$(dead_letter "$TOPIC_PENDING")|$MAX_DELIVERY_ATTEMPTS|${RETENTION_SECONDS}s|true"
check_subscription "$SUB_PAID" "$push_fields" \
  "$topics/$TOPIC_PAID|$money_url/push|$push_sa|$money_url|$delivery|$topics/$(dead_letter "$TOPIC_PAID")|$MAX_DELIVERY_ATTEMPTS|${RETENTION_SECONDS}s|true"
# Dead letters wait 31 days (acked ones too, so that a drained subscription can be sought back).
for topic in "$TOPIC_PENDING" "$TOPIC_PAID"; do
  check_subscription "$(dead_letter "$topic")" "$pull_fields" \
    "$topics/$(dead_letter "$topic")|${DEAD_LETTER_RETENTION_SECONDS}s|true"
done
