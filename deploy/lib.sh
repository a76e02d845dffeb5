# shellcheck shell=bash disable=SC2034
# (SC2034: the names defined here are used by the scripts that source this file.)
# Shared by every deploy step: option parsing, the configuration, resource names, and the
# run-or-print and describe-before-create helpers. Sourced, never run.
#
# Conventions every step follows:
# - every gcloud call names --project (and --region/--location where it applies) explicitly,
#   so the scripts never depend on the operator's active gcloud configuration;
# - flags are always written --name=value (one word), which keeps the printed plan unambiguous;
# - resources Google names itself (alert policies, channels, dashboards) are found by display
#   name (`ensure_named`, `absent_named`), everything else by its name;
# - a mutating command goes through `run`, a read through `ensure`/`grant`/`value_of`/`exists`:
#   with --dry-run nothing at all is executed, not even a describe; the plan goes to stdout,
#   one command per line, conditional ones followed by a `# ...` comment saying when they run;
# - nothing secret is ever part of a command line: the Stark key travels as a file path.
#
# Written for bash 3.2 as well (macOS): no associative arrays, namerefs, mapfile, or expansion
# of possibly empty arrays.

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$DEPLOY_DIR/.." && pwd)

# ── Fixed names ─────────────────────────────────────────────────────────────────────────────
# Deployables; the Cloud Run resources, the images and the binaries share these names.
SERVICE_INVOICE_SENDER=invoice-sender
SERVICE_WEBHOOK_INGESTER=webhook-ingester
SERVICE_MONEY_SENDER=money-sender
JOB_SPAMMER=invoice-spammer
CLI_IMAGE=stark-pipeline
IMAGES="$JOB_SPAMMER $SERVICE_INVOICE_SENDER $SERVICE_WEBHOOK_INGESTER $SERVICE_MONEY_SENDER $CLI_IMAGE"
# The Cloud Run job that runs `stark-pipeline reconcile --repair` (the $CLI_IMAGE image).
JOB_RECONCILER=reconciler

# One service account per identity (service-account ids: 6 to 30 characters).
SA_SPAMMER=invoice-spammer      # runs the job; publishes to pending_invoices only
SA_SENDER=invoice-sender        # runs invoice-sender; reads the Stark key
SA_INGESTER=webhook-ingester    # runs webhook-ingester; reads the Stark key, publishes to paid_invoices
SA_MONEY=money-sender           # runs money-sender; reads the Stark key
SA_PUSH=pubsub-push             # identity in the OIDC tokens of Pub/Sub pushes; invokes the two push services
SA_SCHEDULER=spammer-scheduler  # identity of Cloud Scheduler's calls; runs the job
SA_RECONCILER=reconciler        # runs the reconciler job; reads the Stark key, publishes to paid_invoices
SA_RECONCILER_SCHEDULER=reconciler-scheduler  # identity of Cloud Scheduler's calls; runs the reconciler
SA_BUILDER=image-builder        # identity of Cloud Build; pushes the images
SERVICE_ACCOUNTS="$SA_SPAMMER $SA_SENDER $SA_INGESTER $SA_MONEY $SA_PUSH $SA_SCHEDULER $SA_RECONCILER $SA_RECONCILER_SCHEDULER $SA_BUILDER"

# Pub/Sub, as declared in crates/gcp-pubsub/src/topology.rs (Topology::pipeline): each topic has
# a push subscription and a dead-letter topic `<topic>-dead-letter` with a pull subscription of
# the same name.
TOPIC_PENDING=pending_invoices
TOPIC_PAID=paid_invoices
SUB_PENDING=pending_invoices-invoice-sender
SUB_PAID=paid_invoices-money-sender
DEAD_LETTER_SUFFIX=-dead-letter
# Seven days, the longest a push subscription keeps acked messages: the replay window.
RETENTION_SECONDS=604800
# 31 days, the longest Pub/Sub keeps a subscription's messages: how long dead letters wait.
DEAD_LETTER_RETENTION_SECONDS=2678400
# How long Pub/Sub waits for a push answer before it counts the delivery as failed (the
# topology's ack deadline). A push handler must answer well within it, see check_timeouts.
ACK_DEADLINE_SECONDS=60
# The most Stark calls one push handler makes: invoice-sender looks the invoice up (a GET,
# tried up to 3 times) then creates it (a POST, once); money-sender creates the transfer, then
# may look it up. Each call may take STARK_TIMEOUT_SECONDS.
STARK_CALLS_PER_PUSH=4
# Backoff between those GET attempts (0.2 s + 0.4 s), rounded up.
STARK_RETRY_BACKOFF_SECONDS=1

# Where Cloud Run mounts the Stark private key (a Secret Manager secret) in the signing services.
STARK_KEY_MOUNT=/secrets/stark/private-key.pem

SCHEDULER_JOB=invoice-spammer-hourly
SCHEDULER_RECONCILER=reconciler-every-15-minutes
RECONCILE_SCHEDULE="*/15 * * * *"
# Description given to the network resources 45-egress.sh creates; teardown.sh deletes a network,
# subnet, router or address only when it carries it, so that it never deletes one it did not make.
EGRESS_MARK="Made by stark-pipeline deploy/45-egress.sh for a static egress IP"
LABELS=app=stark-pipeline
# teardown.sh exits with this (EX_TEMPFAIL) when everything is deleted but the egress subnet,
# which Cloud Run keeps in use for 1 to 2 hours after a Direct VPC service is deleted.
EXIT_RUN_AGAIN_LATER=75

# Monitoring (90-monitoring.sh): JSON definitions under deploy/monitoring/, found by display name.
MONITORING_DIR=deploy/monitoring
ALERT_CHANNEL_NAME="stark-pipeline alerts"
# Log-based metrics: name, then the `event` of the log lines it counts (jsonPayload.event).
LOG_METRIC_PREFIX=stark_pipeline_
LOG_METRIC_EVENTS="payout_refused_not_ours payout_rejected invoice_rejected webhook_rejected credited_invoice_published transfer_created"

# ── Output ──────────────────────────────────────────────────────────────────────────────────
DRY_RUN=false
ASSUME_YES=false
CONFIG_FILE=${DEPLOY_CONFIG:-$DEPLOY_DIR/config.env}
# How often, and how far apart, an IAM grant is retried: a service account just created takes
# a few seconds to be visible to IAM.
GRANT_ATTEMPTS=${DEPLOY_GRANT_ATTEMPTS:-6}
RETRY_DELAY=${DEPLOY_RETRY_DELAY:-5}

# The plan of a dry run goes to fd 3, the original stdout, so that helpers called inside $(...)
# still print it.
exec 3>&1

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

warn() {
  printf 'warning: %s\n' "$*" >&2
}

# A progress message: a comment in the plan, a line on stderr in a real run.
say() {
  if $DRY_RUN; then
    printf '# %s\n' "$*" >&3
  else
    printf '    %s\n' "$*" >&2
  fi
}

# A section heading.
step() {
  if $DRY_RUN; then
    printf '\n# === %s\n' "$*" >&3
  else
    printf '\n==> %s\n' "$*" >&2
  fi
}

# Prints its arguments as one line of shell, each word quoted only when it needs to be.
shell_quote() {
  local out='' word quoted
  for word in "$@"; do
    case $word in
      '') quoted="''" ;;
      *[!A-Za-z0-9_./:=,@%+-]*)
        case $word in
          *\'*) quoted="'$(printf '%s' "$word" | sed "s/'/'\\\\''/g")'" ;;
          *) quoted="'$word'" ;;
        esac
        ;;
      *) quoted=$word ;;
    esac
    out="$out${out:+ }$quoted"
  done
  printf '%s' "$out"
}

# A line of the plan: the command, then an optional `# note`.
plan() {
  local note=$1
  shift
  if [ -n "$note" ]; then
    printf '%s   # %s\n' "$(shell_quote "$@")" "$note" >&3
  else
    printf '%s\n' "$(shell_quote "$@")" >&3
  fi
}

# Runs a command that changes something, or prints it in a dry run.
run() {
  if $DRY_RUN; then
    plan '' "$@"
    return 0
  fi
  printf '+ %s\n' "$(shell_quote "$@")" >&2
  "$@"
}

# Whether a describe-like read succeeds. In a dry run it prints the command and answers "no",
# so that the plan shows what a first deploy does.
exists() {
  if $DRY_RUN; then
    plan '' "$@"
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# ensure LABEL DESCRIBE... -- CREATE... [-- UPDATE...]
# Runs DESCRIBE; if it fails, CREATE; if it succeeds, UPDATE when given, else nothing.
ensure() {
  local label=$1 part=0 arg
  shift
  local describe=() create=() update=()
  for arg in "$@"; do
    if [ "$arg" = "--" ] && [ "$part" -lt 2 ]; then
      part=$((part + 1))
      continue
    fi
    case $part in
      0) describe+=("$arg") ;;
      1) create+=("$arg") ;;
      *) update+=("$arg") ;;
    esac
  done
  if [ ${#describe[@]} -eq 0 ] || [ ${#create[@]} -eq 0 ]; then
    die "ensure $label: needs DESCRIBE -- CREATE"
  fi
  if $DRY_RUN; then
    plan '' "${describe[@]}"
    plan "only if $label does not exist" "${create[@]}"
    if [ ${#update[@]} -gt 0 ]; then
      plan "only if $label exists" "${update[@]}"
    fi
    return 0
  fi
  if "${describe[@]}" >/dev/null 2>&1; then
    if [ ${#update[@]} -gt 0 ]; then
      say "$label exists: updating"
      run "${update[@]}"
    else
      say "$label exists"
    fi
  else
    say "$label does not exist: creating"
    run "${create[@]}"
  fi
}

# ensure_absent LABEL DESCRIBE... -- DELETE...   (teardown)
ensure_absent() {
  local label=$1 part=0 arg
  shift
  local describe=() delete=()
  for arg in "$@"; do
    if [ "$arg" = "--" ] && [ "$part" -eq 0 ]; then
      part=1
      continue
    fi
    if [ "$part" -eq 0 ]; then describe+=("$arg"); else delete+=("$arg"); fi
  done
  if [ ${#describe[@]} -eq 0 ] || [ ${#delete[@]} -eq 0 ]; then
    die "ensure_absent $label: needs DESCRIBE -- DELETE"
  fi
  if $DRY_RUN; then
    plan '' "${describe[@]}"
    plan "only if $label exists" "${delete[@]}"
    return 0
  fi
  if "${describe[@]}" >/dev/null 2>&1; then
    say "deleting $label"
    run "${delete[@]}"
  else
    say "$label: already absent"
  fi
}

# ensure_named LABEL PLACEHOLDER DISPLAY_NAME LIST... -- CREATE... -- UPDATE...
# For resources Google names itself (alert policies, notification channels, dashboards), found
# by display name: LIST prints `name<TAB>displayName` lines (gcloud ... list
# --filter='displayName="..."' '--format=value(name,displayName)'), and those whose display
# name is exactly DISPLAY_NAME count. None: CREATE. Otherwise UPDATE runs for each of them, with
# the word {} replaced by its name (by PLACEHOLDER in a dry run).
ensure_named() {
  local label=$1 placeholder=$2 display=$3 part=0 arg
  shift 3
  local list=() create=() update=()
  for arg in "$@"; do
    if [ "$arg" = "--" ] && [ "$part" -lt 2 ]; then
      part=$((part + 1))
      continue
    fi
    case $part in
      0) list+=("$arg") ;;
      1) create+=("$arg") ;;
      *) update+=("$arg") ;;
    esac
  done
  if [ ${#list[@]} -eq 0 ] || [ ${#create[@]} -eq 0 ] || [ ${#update[@]} -eq 0 ]; then
    die "ensure_named $label: needs LIST -- CREATE -- UPDATE"
  fi
  if $DRY_RUN; then
    plan '' "${list[@]}"
    plan "only if no $label exists" "${create[@]}"
    named_command "$placeholder" "${update[@]}"
    plan "for each $label listed above" "${NAMED[@]}"
    return 0
  fi
  list_names "$display" "${list[@]}"
  if [ ${#NAMES[@]} -eq 0 ]; then
    say "$label does not exist: creating"
    run "${create[@]}" >/dev/null
    return 0
  fi
  local name
  for name in "${NAMES[@]}"; do
    say "$label exists ($name): updating"
    named_command "$name" "${update[@]}"
    run "${NAMED[@]}" >/dev/null
  done
  if [ ${#NAMES[@]} -gt 1 ]; then
    warn "${#NAMES[@]} resources are named $label; all were updated (delete the extra ones)"
  fi
}

# absent_named LABEL PLACEHOLDER DISPLAY_NAME LIST... -- DELETE...   (teardown; DELETE names {})
absent_named() {
  local label=$1 placeholder=$2 display=$3 part=0 arg
  shift 3
  local list=() delete=()
  for arg in "$@"; do
    if [ "$arg" = "--" ] && [ "$part" -eq 0 ]; then
      part=1
      continue
    fi
    if [ "$part" -eq 0 ]; then list+=("$arg"); else delete+=("$arg"); fi
  done
  if [ ${#list[@]} -eq 0 ] || [ ${#delete[@]} -eq 0 ]; then
    die "absent_named $label: needs LIST -- DELETE"
  fi
  if $DRY_RUN; then
    plan '' "${list[@]}"
    named_command "$placeholder" "${delete[@]}"
    plan "for each $label listed above" "${NAMED[@]}"
    return 0
  fi
  list_names "$display" "${list[@]}"
  if [ ${#NAMES[@]} -eq 0 ]; then
    say "$label: already absent"
    return 0
  fi
  local name
  for name in "${NAMES[@]}"; do
    say "deleting $label $name"
    named_command "$name" "${delete[@]}"
    run "${NAMED[@]}"
  done
}

# list_names DISPLAY_NAME LIST...: runs LIST, which prints `name<TAB>displayName` lines, and
# sets NAMES to the names whose display name is exactly DISPLAY_NAME (gcloud's --filter may
# match more loosely).
list_names() {
  local display=$1 out name shown
  shift
  out=$("$@") || die "failed: $(shell_quote "$@")"
  NAMES=()
  while IFS=$'\t' read -r name shown; do
    if [ -n "$name" ] && [ "$shown" = "$display" ]; then NAMES+=("$name"); fi
  done <<<"$out"
}

# named_command NAME WORDS...: sets NAMED to WORDS with the word {} replaced by NAME.
named_command() {
  local name=$1 word
  shift
  NAMED=()
  for word in "$@"; do
    if [ "$word" = '{}' ]; then NAMED+=("$name"); else NAMED+=("$word"); fi
  done
}

# grant MEMBER ROLE "GROUP" RESOURCE [SCOPE-FLAGS...]
# Adds one IAM binding on one resource, e.g.
#   grant serviceAccount:a@p.iam.gserviceaccount.com roles/pubsub.publisher "pubsub topics" t --project=p
# Reads the policy first and writes only when the binding is missing, retrying the write while a
# new service account propagates.
grant() {
  local member=$1 role=$2 group=$3 resource=$4
  shift 4
  local words=()
  read -r -a words <<<"$group"
  local get=(gcloud "${words[@]}" get-iam-policy "$resource" "$@"
    '--flatten=bindings[].members' '--format=value(bindings.role,bindings.members)')
  local add=(gcloud "${words[@]}" add-iam-policy-binding "$resource" "$@"
    "--member=$member" "--role=$role")
  if [ "$group" = projects ]; then
    # Never stop on gcloud's question about conditions when the policy has conditional bindings.
    add+=(--condition=None)
  fi
  if $DRY_RUN; then
    plan '' "${get[@]}"
    plan "only if the policy above lacks this binding" "${add[@]}"
    return 0
  fi
  local policy tab
  tab=$(printf '\t')
  policy=$("${get[@]}" 2>/dev/null) || policy=''
  case "
$policy
" in
    *"
$role$tab$member
"*)
      say "$role on $resource for $member: already granted"
      return 0
      ;;
  esac
  local attempt=1
  until run "${add[@]}" >/dev/null; do
    if [ "$attempt" -ge "$GRANT_ATTEMPTS" ]; then
      die "could not grant $role on $resource to $member"
    fi
    warn "grant failed (attempt $attempt of $GRANT_ATTEMPTS); IAM changes take a moment to propagate, retrying in ${RETRY_DELAY}s"
    sleep "$RETRY_DELAY"
    attempt=$((attempt + 1))
  done
}

# revoke MEMBER ROLE "GROUP" RESOURCE [SCOPE-FLAGS...]   (teardown)
# Removes one IAM binding when the policy holds it.
revoke() {
  local member=$1 role=$2 group=$3 resource=$4
  shift 4
  local words=()
  read -r -a words <<<"$group"
  local get=(gcloud "${words[@]}" get-iam-policy "$resource" "$@"
    '--flatten=bindings[].members' '--format=value(bindings.role,bindings.members)')
  local remove=(gcloud "${words[@]}" remove-iam-policy-binding "$resource" "$@"
    "--member=$member" "--role=$role")
  if [ "$group" = projects ]; then
    remove+=(--condition=None)
  fi
  if $DRY_RUN; then
    plan '' "${get[@]}"
    plan "only if the policy above holds this binding" "${remove[@]}"
    return 0
  fi
  local policy tab
  tab=$(printf '\t')
  policy=$("${get[@]}" 2>/dev/null) || policy=''
  case "
$policy
" in
    *"
$role$tab$member
"*)
      run "${remove[@]}" >/dev/null
      ;;
    *) say "$role on $resource for $member: not granted" ;;
  esac
}

# value_of PLACEHOLDER COMMAND...
# Prints what COMMAND prints (a URL, a project number...), or PLACEHOLDER in a dry run.
value_of() {
  local placeholder=$1
  shift
  if $DRY_RUN; then
    plan "=> $placeholder" "$@"
    printf '%s\n' "$placeholder"
    return 0
  fi
  local out
  out=$("$@") || die "failed: $(shell_quote "$@")"
  [ -n "$out" ] || die "no value from: $(shell_quote "$@")"
  printf '%s\n' "$out"
}

# ── Options ─────────────────────────────────────────────────────────────────────────────────
usage() {
  # The calling script's header comment, from line 2 to `set -euo pipefail`.
  sed -n '2,/^set -euo pipefail/p' "$0" | sed -n 's/^# \{0,1\}//p'
  cat <<'EOF'

Options (every deploy script):
  --dry-run      print every command (gcloud, docker, stark-pipeline) instead of running any
  --config FILE  configuration file (default: deploy/config.env, or $DEPLOY_CONFIG)
  --yes          teardown.sh only: do not ask for confirmation
  -h, --help     this help
EOF
}

parse_args() {
  while [ $# -gt 0 ]; do
    case $1 in
      --dry-run) DRY_RUN=true ;;
      --config)
        [ $# -ge 2 ] || die "--config needs a file"
        CONFIG_FILE=$2
        shift
        ;;
      --config=*) CONFIG_FILE=${1#--config=} ;;
      --yes | -y) ASSUME_YES=true ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
  done
}

# ── Configuration ───────────────────────────────────────────────────────────────────────────
require() {
  local name
  for name in "$@"; do
    [ -n "${!name:-}" ] || die "$name is not set in $CONFIG_FILE (see deploy/config.env.example)"
  done
}

check() {
  # check NAME REGEX WHAT
  local value=${!1:-}
  [[ $value =~ $2 ]] || die "$1=$value is invalid: $3"
}

is_true() {
  case $1 in
    true) return 0 ;;
    false) return 1 ;;
    *) die "expected true or false, got '$1'" ;;
  esac
}

# Every variable the configuration file may set. The file is the only source of the
# configuration: the same names in the environment (say, a shell that loaded the services' .env
# for a local run, with other PAYOUT_* values) are dropped before it is read, except the few a
# one-off run may override: IMAGE_TAG (rolling back) and STARK_PIPELINE_* (where the CLI is).
CONFIG_VARS="PROJECT_ID REGION REPOSITORY BUILD_WITH
  STARK_ENVIRONMENT STARK_ACCESS_ID STARK_PRIVATE_KEY_FILE STARK_KEY_SECRET STARK_WORKSPACE_ID
  STARK_LANGUAGE STARK_TIMEOUT_SECONDS
  CAMPAIGN_ID CAMPAIGN_START CAMPAIGN_HOURS INVOICE_AMOUNT_MIN_CENTS INVOICE_AMOUNT_MAX_CENTS
  INVOICE_DUE_HOURS INVOICE_EXPIRATION_SECONDS PUBLISH_CONCURRENCY
  SCHEDULE SCHEDULER_TIME_ZONE SCHEDULER_LOCATION RECONCILE_HOURS_AFTER
  PAYOUT_BANK_CODE PAYOUT_BRANCH_CODE PAYOUT_ACCOUNT_NUMBER PAYOUT_NAME PAYOUT_TAX_ID PAYOUT_ACCOUNT_TYPE
  PAYOUT_TRANSFER_FEE_CENTS PAYOUT_SETTLE_WAIT
  MAX_DELIVERY_ATTEMPTS MIN_BACKOFF_SECONDS MAX_BACKOFF_SECONDS
  PUSH_SERVICES_INGRESS SERVICE_CPU SERVICE_MEMORY SERVICE_MAX_INSTANCES
  SERVICE_TIMEOUT INGESTER_MIN_INSTANCES INGESTER_INVOKER_IAM_CHECK RUST_LOG WEBHOOK_MAX_BODY_BYTES
  PUBLISH_TIMEOUT_SECONDS
  STATIC_EGRESS EGRESS_NETWORK EGRESS_SUBNET EGRESS_SUBNET_RANGE EGRESS_ROUTER EGRESS_NAT EGRESS_ADDRESS
  ALERT_EMAIL"

load_config() {
  local name env_image_tag=${IMAGE_TAG:-}
  for name in $CONFIG_VARS; do
    unset "$name"
  done
  [ -f "$CONFIG_FILE" ] || die "no configuration at $CONFIG_FILE: copy deploy/config.env.example to deploy/config.env and fill it in, or pass --config FILE"
  # shellcheck source=/dev/null
  . "$CONFIG_FILE"
  : "${IMAGE_TAG:=$env_image_tag}"

  require PROJECT_ID REGION STARK_ENVIRONMENT STARK_ACCESS_ID STARK_PRIVATE_KEY_FILE STARK_WORKSPACE_ID \
    CAMPAIGN_ID CAMPAIGN_START ALERT_EMAIL
  check PROJECT_ID '^[a-z][a-z0-9-]{4,28}[a-z0-9]$' "not a Google Cloud project id"
  check REGION '^[a-z]+-[a-z]+[0-9]+$' "expected a region such as southamerica-east1"
  check STARK_ENVIRONMENT '^(sandbox|production|https?://.+)$' "expected sandbox, production or a base URL"
  check STARK_ACCESS_ID '^(project/[0-9]+|organization/[0-9]+(/workspace/[0-9]+)?)$' "expected project/<id> or organization/<id>[/workspace/<id>]"
  check STARK_WORKSPACE_ID '^[0-9]{1,30}$' "the digits of your Stark workspace id (the workspaceId of any Stark event, or Stark's web banking)"
  check CAMPAIGN_ID '^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$' "lowercase letters, digits and '-', 1 to 48 characters, no leading or trailing '-'"
  check CAMPAIGN_START "$RFC3339_RE" "expected RFC 3339, e.g. 2025-01-01T00:00:00Z"
  check ALERT_EMAIL '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$' "an e-mail address for the alerts"

  : "${REPOSITORY:=stark-pipeline}"
  : "${BUILD_WITH:=cloudbuild}"
  : "${STARK_KEY_SECRET:=stark-private-key}"
  : "${CAMPAIGN_HOURS:=24}"
  : "${INVOICE_AMOUNT_MIN_CENTS:=1000}"
  : "${INVOICE_AMOUNT_MAX_CENTS:=50000}"
  : "${SCHEDULE:=0 * * * *}"
  : "${SCHEDULER_TIME_ZONE:=Etc/UTC}"
  : "${SCHEDULER_LOCATION:=$REGION}"
  : "${RECONCILE_HOURS_AFTER:=48}"
  : "${MAX_DELIVERY_ATTEMPTS:=100}"
  : "${MIN_BACKOFF_SECONDS:=10}"
  : "${MAX_BACKOFF_SECONDS:=600}"
  : "${PUSH_SERVICES_INGRESS:=internal}"
  : "${SERVICE_CPU:=1}"
  : "${SERVICE_MEMORY:=512Mi}"
  : "${SERVICE_MAX_INSTANCES:=10}"
  : "${SERVICE_TIMEOUT:=50s}"
  : "${STATIC_EGRESS:=false}"
  check STATIC_EGRESS '^(true|false)$' "true or false"
  if [ "$STATIC_EGRESS" = true ]; then
    : "${INGESTER_MIN_INSTANCES:=1}"
  else
    : "${INGESTER_MIN_INSTANCES:=0}"
  fi
  : "${INGESTER_INVOKER_IAM_CHECK:=true}"
  : "${EGRESS_NETWORK:=stark-pipeline}"
  : "${EGRESS_SUBNET:=stark-pipeline-egress}"
  : "${EGRESS_SUBNET_RANGE:=10.8.0.0/24}"
  : "${EGRESS_ROUTER:=stark-pipeline-router}"
  : "${EGRESS_NAT:=stark-pipeline-nat}"
  : "${EGRESS_ADDRESS:=stark-pipeline-egress-ip}"
  : "${STARK_PIPELINE_RUNNER:=binary}"
  : "${STARK_PIPELINE_BIN:=target/release/stark-pipeline}"

  check CAMPAIGN_HOURS '^[1-9][0-9]{0,3}$' "a number of hours, 1 to 8784"
  [ "$CAMPAIGN_HOURS" -le 8784 ] || die "CAMPAIGN_HOURS=$CAMPAIGN_HOURS is invalid: at most 8784"
  check RECONCILE_HOURS_AFTER '^[0-9]{1,4}$' "a number of hours, 0 to 8784"
  [ "$RECONCILE_HOURS_AFTER" -le 8784 ] || die "RECONCILE_HOURS_AFTER=$RECONCILE_HOURS_AFTER is invalid: at most 8784"
  check INVOICE_AMOUNT_MIN_CENTS '^[1-9][0-9]*$' "a positive number of cents"
  check INVOICE_AMOUNT_MAX_CENTS '^[1-9][0-9]*$' "a positive number of cents"
  [ "$INVOICE_AMOUNT_MIN_CENTS" -le "$INVOICE_AMOUNT_MAX_CENTS" ] ||
    die "INVOICE_AMOUNT_MIN_CENTS ($INVOICE_AMOUNT_MIN_CENTS) exceeds INVOICE_AMOUNT_MAX_CENTS ($INVOICE_AMOUNT_MAX_CENTS)"
  check MAX_DELIVERY_ATTEMPTS '^[0-9]{1,3}$' "a number from 5 to 100"
  if [ "$MAX_DELIVERY_ATTEMPTS" -lt 5 ] || [ "$MAX_DELIVERY_ATTEMPTS" -gt 100 ]; then
    die "MAX_DELIVERY_ATTEMPTS=$MAX_DELIVERY_ATTEMPTS is invalid: Pub/Sub accepts 5 to 100"
  fi
  check MIN_BACKOFF_SECONDS '^[0-9]{1,3}$' "a number of seconds from 0 to 600"
  check MAX_BACKOFF_SECONDS '^[0-9]{1,3}$' "a number of seconds from 0 to 600"
  if [ "$MIN_BACKOFF_SECONDS" -gt 600 ] || [ "$MAX_BACKOFF_SECONDS" -gt 600 ]; then
    die "MIN_BACKOFF_SECONDS=$MIN_BACKOFF_SECONDS / MAX_BACKOFF_SECONDS=$MAX_BACKOFF_SECONDS is invalid: Pub/Sub accepts 0 to 600 s"
  fi
  [ "$MIN_BACKOFF_SECONDS" -le "$MAX_BACKOFF_SECONDS" ] ||
    die "MIN_BACKOFF_SECONDS ($MIN_BACKOFF_SECONDS) exceeds MAX_BACKOFF_SECONDS ($MAX_BACKOFF_SECONDS)"
  check SCHEDULE '^[^ ]+( [^ ]+){4}$' "a five-field cron expression such as '0 * * * *'"
  check BUILD_WITH '^(cloudbuild|docker)$' "cloudbuild or docker"
  check PUSH_SERVICES_INGRESS '^(all|internal)$' "all or internal"
  check INGESTER_MIN_INSTANCES '^[0-9]{1,3}$' "a number of instances"
  check INGESTER_INVOKER_IAM_CHECK '^(true|false)$' "true or false"
  if [ "$STATIC_EGRESS" = true ] && [ "$INGESTER_MIN_INSTANCES" -lt 1 ]; then
    die "INGESTER_MIN_INSTANCES=0 is invalid with STATIC_EGRESS=true: a new instance with Direct VPC egress and Cloud NAT can wait a minute or more for its first outbound connection, so the ingester keeps at least one instance warm (leave INGESTER_MIN_INSTANCES unset for 1)"
  fi
  check STARK_PIPELINE_RUNNER '^(binary|docker)$' "binary or docker"
  check STARK_KEY_SECRET '^[A-Za-z0-9_-]{1,255}$' "a Secret Manager secret id"
  check_timeouts
  campaign_window

  # Relative paths are taken from the repository root, where every script runs.
  cd "$REPO_ROOT" || die "cannot enter $REPO_ROOT"
  if [ ! -f "$STARK_PRIVATE_KEY_FILE" ] || [ ! -r "$STARK_PRIVATE_KEY_FILE" ]; then
    die "STARK_PRIVATE_KEY_FILE=$STARK_PRIVATE_KEY_FILE is not a readable file (relative paths start at $REPO_ROOT)"
  fi
  grep -q 'PRIVATE KEY-----' "$STARK_PRIVATE_KEY_FILE" ||
    die "STARK_PRIVATE_KEY_FILE=$STARK_PRIVATE_KEY_FILE does not look like a PEM private key"

  if [ -z "${IMAGE_TAG:-}" ]; then
    IMAGE_TAG=$(default_image_tag) || die "cannot derive IMAGE_TAG from git; set IMAGE_TAG in $CONFIG_FILE"
  fi
  check IMAGE_TAG '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$' "a Docker tag"

  REGISTRY_HOST=$REGION-docker.pkg.dev
  REGISTRY=$REGISTRY_HOST/$PROJECT_ID/$REPOSITORY
  : "${STARK_PIPELINE_IMAGE:=$(image_ref "$CLI_IMAGE")}"
  # Where `gcloud builds submit` uploads the source (Cloud Build's usual staging bucket).
  BUILD_BUCKET=gs://${PROJECT_ID}_cloudbuild
}

# A push handler must always answer within the subscriptions' ack deadline, or Pub/Sub counts
# the delivery as failed while the handler may still be creating the invoice or the transfer:
#   STARK_CALLS_PER_PUSH x STARK_TIMEOUT_SECONDS + retry backoff  <=  SERVICE_TIMEOUT  <  ack deadline
# (the second bound also holds for the ingester, whose caller is Stark).
check_timeouts() {
  local timeout_s stark_ms budget_ms
  if [[ $SERVICE_TIMEOUT =~ ^([0-9]{1,5})s?$ ]]; then
    timeout_s=$((10#${BASH_REMATCH[1]}))
  elif [[ $SERVICE_TIMEOUT =~ ^([0-9]{1,3})m$ ]]; then
    timeout_s=$((10#${BASH_REMATCH[1]} * 60))
  else
    die "SERVICE_TIMEOUT=$SERVICE_TIMEOUT is invalid: seconds, written 50s, 50 or 1m"
  fi
  if [ "$timeout_s" -lt 1 ] || [ "$timeout_s" -ge "$ACK_DEADLINE_SECONDS" ]; then
    die "SERVICE_TIMEOUT=$SERVICE_TIMEOUT is invalid: a push must be answered within the subscriptions' ${ACK_DEADLINE_SECONDS} s ack deadline, so the request timeout must be below it (default 50s)"
  fi
  local stark_timeout=${STARK_TIMEOUT_SECONDS:-10}
  [[ $stark_timeout =~ ^([0-9]{1,3})(\.([0-9]{1,3}))?$ ]] ||
    die "STARK_TIMEOUT_SECONDS=$stark_timeout is invalid: seconds, e.g. 10 or 2.5"
  local frac="${BASH_REMATCH[3]}000"
  stark_ms=$((10#${BASH_REMATCH[1]} * 1000 + 10#${frac:0:3}))
  [ "$stark_ms" -ge 100 ] || die "STARK_TIMEOUT_SECONDS=$stark_timeout is invalid: at least 0.1"
  budget_ms=$((STARK_CALLS_PER_PUSH * stark_ms + STARK_RETRY_BACKOFF_SECONDS * 1000))
  if [ "$budget_ms" -gt $((timeout_s * 1000)) ]; then
    local tenths=$(((timeout_s - STARK_RETRY_BACKOFF_SECONDS) * 10 / STARK_CALLS_PER_PUSH))
    die "STARK_TIMEOUT_SECONDS=$stark_timeout and SERVICE_TIMEOUT=$SERVICE_TIMEOUT do not fit the ${ACK_DEADLINE_SECONDS} s ack deadline: a push handler makes up to $STARK_CALLS_PER_PUSH Stark calls, so $STARK_CALLS_PER_PUSH x ${stark_timeout} s + ${STARK_RETRY_BACKOFF_SECONDS} s of retry backoff must not exceed SERVICE_TIMEOUT (${timeout_s} s), which must stay below ${ACK_DEADLINE_SECONDS} s: lower STARK_TIMEOUT_SECONDS (at most $((tenths / 10)).$((tenths % 10)) with this SERVICE_TIMEOUT) or raise SERVICE_TIMEOUT"
  fi
}

# ── Time ────────────────────────────────────────────────────────────────────────────────────
# Pure bash (GNU and BSD date disagree on parsing): RFC 3339 <-> seconds since the epoch.
RFC3339_RE='^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(Z|([+-])([0-9]{2}):([0-9]{2}))$'

# days_from_civil Y M D: days since 1970-01-01 (proleptic Gregorian calendar).
days_from_civil() {
  local y=$((10#$1)) m=$((10#$2)) d=$((10#$3))
  if [ "$m" -le 2 ]; then y=$((y - 1)); fi
  local era=$(((y >= 0 ? y : y - 399) / 400))
  local yoe=$((y - era * 400))
  local doy=$(((153 * ((m + 9) % 12) + 2) / 5 + d - 1))
  local doe=$((yoe * 365 + yoe / 4 - yoe / 100 + doy))
  printf '%s\n' $((era * 146097 + doe - 719468))
}

# rfc3339_epoch TIME: seconds since the epoch (fractions dropped).
rfc3339_epoch() {
  [[ $1 =~ $RFC3339_RE ]] || die "not an RFC 3339 time: $1"
  local parts=("${BASH_REMATCH[@]}") days offset=0
  days=$(days_from_civil "${parts[1]}" "${parts[2]}" "${parts[3]}")
  if [ "${parts[8]}" != Z ]; then
    offset=$((10#${parts[10]} * 3600 + 10#${parts[11]} * 60))
    if [ "${parts[9]}" = - ]; then offset=$((-offset)); fi
  fi
  printf '%s\n' $((days * 86400 + 10#${parts[4]} * 3600 + 10#${parts[5]} * 60 + 10#${parts[6]} - offset))
}

# epoch_rfc3339 SECONDS: the UTC time, e.g. 2025-01-02T00:00:00Z.
epoch_rfc3339() {
  local t=$1 z era doe yoe y doy mp d m
  z=$((t / 86400 + 719468))
  if [ $((t % 86400)) -lt 0 ]; then z=$((z - 1)); fi
  local secs=$((t - (z - 719468) * 86400))
  era=$(((z >= 0 ? z : z - 146096) / 146097))
  doe=$((z - era * 146097))
  yoe=$(((doe - doe / 1460 + doe / 36524 - doe / 146096) / 365))
  y=$((yoe + era * 400))
  doy=$((doe - (365 * yoe + yoe / 4 - yoe / 100)))
  mp=$(((5 * doy + 2) / 153))
  d=$((doy - (153 * mp + 2) / 5 + 1))
  m=$((mp < 10 ? mp + 3 : mp - 9))
  if [ "$m" -le 2 ]; then y=$((y + 1)); fi
  printf '%04d-%02d-%02dT%02d:%02d:%02dZ\n' "$y" "$m" "$d" $((secs / 3600)) $((secs % 3600 / 60)) $((secs % 60))
}

# Now, in seconds since the epoch. DEPLOY_NOW (RFC 3339) stands in for the clock in tests.
now_epoch() {
  if [ -n "${DEPLOY_NOW:-}" ]; then
    rfc3339_epoch "$DEPLOY_NOW"
  else
    date -u +%s
  fi
}

# The campaign's windows: the spammer publishes in [start, end), the reconciler runs until
# RECONCILE_HOURS_AFTER hours after the end. Cloud Scheduler has no end date: 70-scheduler.sh
# (and so up.sh) pauses each scheduler job once its window is over.
campaign_window() {
  CAMPAIGN_START_EPOCH=$(rfc3339_epoch "$CAMPAIGN_START")
  CAMPAIGN_END_EPOCH=$((CAMPAIGN_START_EPOCH + CAMPAIGN_HOURS * 3600))
  RECONCILE_END_EPOCH=$((CAMPAIGN_END_EPOCH + RECONCILE_HOURS_AFTER * 3600))
  CAMPAIGN_END_AT=$(epoch_rfc3339 "$CAMPAIGN_END_EPOCH")
  RECONCILE_END_AT=$(epoch_rfc3339 "$RECONCILE_END_EPOCH")
  NOW_EPOCH=$(now_epoch)
}

# The commit, plus "-dirty" when the work tree differs from it (such a tag is rebuilt and
# overwritten on every run).
default_image_tag() {
  local commit
  commit=$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD 2>/dev/null) || return 1
  if [ -n "$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null)" ]; then
    printf '%s-dirty\n' "$commit"
  else
    printf '%s\n' "$commit"
  fi
}

# Parses the options and loads the configuration. Every step starts with `init "$@"`.
init() {
  parse_args "$@"
  case $CONFIG_FILE in
    /*) ;;
    *) CONFIG_FILE=$PWD/$CONFIG_FILE ;;
  esac
  load_config
  if ! $DRY_RUN; then
    # Never let gcloud stop on a question.
    export CLOUDSDK_CORE_DISABLE_PROMPTS=1
    command -v gcloud >/dev/null 2>&1 || die "gcloud is not installed (https://cloud.google.com/sdk/docs/install)"
  fi
}

# ── Derived names ───────────────────────────────────────────────────────────────────────────
image_ref() {
  printf '%s/%s:%s\n' "$REGISTRY" "$1" "$IMAGE_TAG"
}

sa_email() {
  printf '%s@%s.iam.gserviceaccount.com\n' "$1" "$PROJECT_ID"
}

dead_letter() {
  printf '%s%s\n' "$1" "$DEAD_LETTER_SUFFIX"
}

pubsub_agent() {
  # pubsub_agent PROJECT_NUMBER
  printf 'service-%s@gcp-sa-pubsub.iam.gserviceaccount.com\n' "$1"
}

project_number() {
  value_of '<project-number>' gcloud projects describe "$PROJECT_ID" '--format=value(projectNumber)'
}

service_url() {
  value_of "<$1-url>" gcloud run services describe "$1" "--region=$REGION" "--project=$PROJECT_ID" \
    '--format=value(status.url)'
}

# The argument of --set-env-vars for NAME=VALUE pairs, with gcloud's alternate delimiter when a
# value holds a comma (see `gcloud topic escaping`).
env_vars_flag() {
  local pair joined='' delim=,
  for pair in "$@"; do
    case $pair in *,*) delim='|' ;; esac
  done
  if [ "$delim" = '|' ]; then
    for pair in "$@"; do
      case $pair in *'|'*) die "cannot pass $pair: a value holds both ',' and '|'" ;; esac
    done
  fi
  for pair in "$@"; do
    joined="$joined${joined:+$delim}$pair"
  done
  if [ "$delim" = '|' ]; then
    printf -- '--set-env-vars=^|^%s\n' "$joined"
  else
    printf -- '--set-env-vars=%s\n' "$joined"
  fi
}

# Appends NAME=VALUE to the array ENV_PAIRS for each NAME that is set and not empty.
ENV_PAIRS=()
add_optional_env() {
  local name
  for name in "$@"; do
    if [ -n "${!name:-}" ]; then
      ENV_PAIRS+=("$name=${!name}")
    fi
  done
}

# Appends to ENV_PAIRS the campaign as the spammer reads it. The reconciler gets the same: a
# slot's batch is a pure function of these, so it recomputes exactly the requests the spammer
# published.
campaign_env_pairs() {
  ENV_PAIRS+=("CAMPAIGN_ID=$CAMPAIGN_ID" "CAMPAIGN_START=$CAMPAIGN_START" "CAMPAIGN_HOURS=$CAMPAIGN_HOURS"
    "INVOICE_AMOUNT_MIN_CENTS=$INVOICE_AMOUNT_MIN_CENTS" "INVOICE_AMOUNT_MAX_CENTS=$INVOICE_AMOUNT_MAX_CENTS")
  add_optional_env INVOICE_DUE_HOURS INVOICE_EXPIRATION_SECONDS
}

# Appends to ENV_PAIRS the variables every signing service needs to reach Stark Bank.
stark_env_pairs() {
  ENV_PAIRS+=("STARK_ACCESS_ID=$STARK_ACCESS_ID" "STARK_ENVIRONMENT=$STARK_ENVIRONMENT"
    "STARK_PRIVATE_KEY_FILE=$STARK_KEY_MOUNT" "STARK_WORKSPACE_ID=$STARK_WORKSPACE_ID")
  add_optional_env STARK_LANGUAGE STARK_TIMEOUT_SECONDS
}

# Appends to ENV_PAIRS the payout account and settings (money-sender pays it; the reconciler
# checks it).
payout_env_pairs() {
  add_optional_env PAYOUT_BANK_CODE PAYOUT_BRANCH_CODE PAYOUT_ACCOUNT_NUMBER PAYOUT_NAME \
    PAYOUT_TAX_ID PAYOUT_ACCOUNT_TYPE PAYOUT_TRANSFER_FEE_CENTS PAYOUT_SETTLE_WAIT
}

# The number of the Stark key's latest Secret Manager version: the one 40-secrets.sh added or
# found holding the key file. Services and the reconciler mount that number, never `latest`,
# so each revision keeps the key it started with and a rollback keeps its key.
stark_key_version() {
  local name
  name=$(value_of '<key-version>' gcloud secrets versions describe latest \
    "--secret=$STARK_KEY_SECRET" "--project=$PROJECT_ID" '--format=value(name)')
  name=${name##*/}
  if ! $DRY_RUN; then
    [[ $name =~ ^[0-9]+$ ]] || die "secret $STARK_KEY_SECRET has no usable latest version (got '$name'): run deploy/40-secrets.sh"
  fi
  printf '%s\n' "$name"
}

# --set-secrets of the Stark key, pinned to version $1.
secret_flag() {
  printf -- '--set-secrets=%s=%s:%s\n' "$STARK_KEY_MOUNT" "$STARK_KEY_SECRET" "$1"
}

# Direct VPC egress flags of the Cloud Run resources that call Stark (into NETWORK_FLAGS).
network_flags() {
  if is_true "$STATIC_EGRESS"; then
    NETWORK_FLAGS=("--network=$EGRESS_NETWORK" "--subnet=$EGRESS_SUBNET" --vpc-egress=all-traffic)
  else
    NETWORK_FLAGS=(--clear-network)
  fi
}

# display_name FILE: the top-level "displayName" of a JSON definition of deploy/monitoring/
# (written on a line of its own, indented by two spaces, as in every file there).
display_name() {
  local name
  name=$(sed -n 's/^  "displayName": "\(.*\)",\{0,1\}$/\1/p' "$1" | head -n 1)
  [ -n "$name" ] || die "$1 has no top-level \"displayName\""
  printf '%s\n' "$name"
}

# ── The operator CLI ────────────────────────────────────────────────────────────────────────
# run_cli [--stark] ARGS...
# Runs `stark-pipeline ARGS...`: the local binary $STARK_PIPELINE_BIN, or the deploy image with
# STARK_PIPELINE_RUNNER=docker. With --stark it gets the Stark credentials of the configuration
# (the key as a file), for commands that call Stark; without, it works on Google Cloud with
# Application Default Credentials (in Docker: your ADC file, mounted read-only).
run_cli() {
  local with_stark=false
  if [ "${1:-}" = --stark ]; then
    with_stark=true
    shift
  fi
  local cmd=()
  if [ "$STARK_PIPELINE_RUNNER" = docker ]; then
    cmd=(docker run --rm --platform=linux/amd64 "--user=$(id -u):$(id -g)")
    if $with_stark; then
      local key
      key="$(cd "$(dirname "$STARK_PRIVATE_KEY_FILE")" && pwd)/$(basename "$STARK_PRIVATE_KEY_FILE")"
      cmd+=("--volume=$key:$STARK_KEY_MOUNT:ro" "--env=STARK_ACCESS_ID=$STARK_ACCESS_ID"
        "--env=STARK_ENVIRONMENT=$STARK_ENVIRONMENT" "--env=STARK_PRIVATE_KEY_FILE=$STARK_KEY_MOUNT")
    else
      local adc=${GOOGLE_APPLICATION_CREDENTIALS:-$HOME/.config/gcloud/application_default_credentials.json}
      if ! $DRY_RUN && [ ! -f "$adc" ]; then
        die "no Application Default Credentials at $adc: run gcloud auth application-default login"
      fi
      cmd+=("--volume=$adc:/var/run/gcp/adc.json:ro" --env=GOOGLE_APPLICATION_CREDENTIALS=/var/run/gcp/adc.json)
    fi
    cmd+=("$STARK_PIPELINE_IMAGE")
  else
    if ! $DRY_RUN && ! command -v "$STARK_PIPELINE_BIN" >/dev/null 2>&1; then
      die "the operator CLI is not at $STARK_PIPELINE_BIN: build it (cargo build --release -p stark-pipeline), point STARK_PIPELINE_BIN at it, or set STARK_PIPELINE_RUNNER=docker"
    fi
    if $with_stark; then
      cmd=(env "STARK_ACCESS_ID=$STARK_ACCESS_ID" "STARK_ENVIRONMENT=$STARK_ENVIRONMENT"
        "STARK_PRIVATE_KEY_FILE=$STARK_PRIVATE_KEY_FILE")
    fi
    cmd+=("$STARK_PIPELINE_BIN")
  fi
  run "${cmd[@]}" "$@"
}
