# shellcheck shell=bash disable=SC2034
# (SC2034: the names defined here are used by the scripts that source this file.)
# Shared by every deploy step: option parsing, the configuration, resource names, and the
# run-or-print and describe-before-create helpers. Sourced, never run.
#
# Conventions every step follows:
# - every gcloud call names --project (and --region/--location where it applies) explicitly,
#   so the scripts never depend on the operator's active gcloud configuration;
# - flags are always written --name=value (one word), which keeps the printed plan unambiguous;
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

# One service account per identity (service-account ids: 6 to 30 characters).
SA_SPAMMER=invoice-spammer      # runs the job; publishes to pending_invoices only
SA_SENDER=invoice-sender        # runs invoice-sender; reads the Stark key
SA_INGESTER=webhook-ingester    # runs webhook-ingester; reads the Stark key, publishes to paid_invoices
SA_MONEY=money-sender           # runs money-sender; reads the Stark key
SA_PUSH=pubsub-push             # identity in the OIDC tokens of Pub/Sub pushes; invokes the two push services
SA_SCHEDULER=spammer-scheduler  # identity of Cloud Scheduler's calls; runs the job
SERVICE_ACCOUNTS="$SA_SPAMMER $SA_SENDER $SA_INGESTER $SA_MONEY $SA_PUSH $SA_SCHEDULER"

# Pub/Sub, as declared in crates/gcp-pubsub/src/topology.rs (Topology::pipeline): each topic has
# a push subscription and a dead-letter topic `<topic>-dead-letter` with a pull subscription of
# the same name.
TOPIC_PENDING=pending_invoices
TOPIC_PAID=paid_invoices
SUB_PENDING=pending_invoices-invoice-sender
SUB_PAID=paid_invoices-money-sender
DEAD_LETTER_SUFFIX=-dead-letter
# Seven days, the longest retention Pub/Sub allows: the replay window.
RETENTION_SECONDS=604800

# Where Cloud Run mounts the Stark private key (a Secret Manager secret) in the signing services.
STARK_KEY_MOUNT=/secrets/stark/private-key.pem

SCHEDULER_JOB=invoice-spammer-hourly
# Description given to the network resources 45-egress.sh creates; teardown.sh deletes a network,
# subnet, router or address only when it carries it, so that it never deletes one it did not make.
EGRESS_MARK="Made by stark-pipeline deploy/45-egress.sh for a static egress IP"
LABELS=app=stark-pipeline

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
  SCHEDULE SCHEDULER_TIME_ZONE SCHEDULER_LOCATION
  PAYOUT_BANK_CODE PAYOUT_BRANCH_CODE PAYOUT_ACCOUNT_NUMBER PAYOUT_NAME PAYOUT_TAX_ID PAYOUT_ACCOUNT_TYPE
  MAX_DELIVERY_ATTEMPTS PUSH_SERVICES_INGRESS SERVICE_CPU SERVICE_MEMORY SERVICE_MAX_INSTANCES
  SERVICE_TIMEOUT INGESTER_MIN_INSTANCES RUST_LOG WEBHOOK_MAX_BODY_BYTES PUBLISH_TIMEOUT_SECONDS
  STATIC_EGRESS EGRESS_NETWORK EGRESS_SUBNET EGRESS_SUBNET_RANGE EGRESS_ROUTER EGRESS_NAT EGRESS_ADDRESS"

load_config() {
  local name env_image_tag=${IMAGE_TAG:-}
  for name in $CONFIG_VARS; do
    unset "$name"
  done
  [ -f "$CONFIG_FILE" ] || die "no configuration at $CONFIG_FILE: copy deploy/config.env.example to deploy/config.env and fill it in, or pass --config FILE"
  # shellcheck source=/dev/null
  . "$CONFIG_FILE"
  : "${IMAGE_TAG:=$env_image_tag}"

  require PROJECT_ID REGION STARK_ENVIRONMENT STARK_ACCESS_ID STARK_PRIVATE_KEY_FILE CAMPAIGN_ID CAMPAIGN_START
  check PROJECT_ID '^[a-z][a-z0-9-]{4,28}[a-z0-9]$' "not a Google Cloud project id"
  check REGION '^[a-z]+-[a-z]+[0-9]+$' "expected a region such as southamerica-east1"
  check STARK_ENVIRONMENT '^(sandbox|production|https?://.+)$' "expected sandbox, production or a base URL"
  check STARK_ACCESS_ID '^(project/[0-9]+|organization/[0-9]+(/workspace/[0-9]+)?)$' "expected project/<id> or organization/<id>[/workspace/<id>]"
  check CAMPAIGN_ID '^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$' "lowercase letters, digits and '-', 1 to 48 characters, no leading or trailing '-'"
  check CAMPAIGN_START '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$' "expected RFC 3339, e.g. 2025-01-01T00:00:00Z"

  : "${REPOSITORY:=stark-pipeline}"
  : "${BUILD_WITH:=cloudbuild}"
  : "${STARK_KEY_SECRET:=stark-private-key}"
  : "${STARK_WORKSPACE_ID:=}"
  : "${CAMPAIGN_HOURS:=24}"
  : "${INVOICE_AMOUNT_MIN_CENTS:=1000}"
  : "${INVOICE_AMOUNT_MAX_CENTS:=50000}"
  : "${SCHEDULE:=0 * * * *}"
  : "${SCHEDULER_TIME_ZONE:=Etc/UTC}"
  : "${SCHEDULER_LOCATION:=$REGION}"
  : "${MAX_DELIVERY_ATTEMPTS:=5}"
  : "${PUSH_SERVICES_INGRESS:=internal}"
  : "${SERVICE_CPU:=1}"
  : "${SERVICE_MEMORY:=512Mi}"
  : "${SERVICE_MAX_INSTANCES:=10}"
  : "${INGESTER_MIN_INSTANCES:=0}"
  : "${SERVICE_TIMEOUT:=60s}"
  : "${STATIC_EGRESS:=false}"
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
  check INVOICE_AMOUNT_MIN_CENTS '^[1-9][0-9]*$' "a positive number of cents"
  check INVOICE_AMOUNT_MAX_CENTS '^[1-9][0-9]*$' "a positive number of cents"
  [ "$INVOICE_AMOUNT_MIN_CENTS" -le "$INVOICE_AMOUNT_MAX_CENTS" ] ||
    die "INVOICE_AMOUNT_MIN_CENTS ($INVOICE_AMOUNT_MIN_CENTS) exceeds INVOICE_AMOUNT_MAX_CENTS ($INVOICE_AMOUNT_MAX_CENTS)"
  check MAX_DELIVERY_ATTEMPTS '^[0-9]+$' "a number from 5 to 100"
  if [ "$MAX_DELIVERY_ATTEMPTS" -lt 5 ] || [ "$MAX_DELIVERY_ATTEMPTS" -gt 100 ]; then
    die "MAX_DELIVERY_ATTEMPTS=$MAX_DELIVERY_ATTEMPTS is invalid: Pub/Sub accepts 5 to 100"
  fi
  check SCHEDULE '^[^ ]+( [^ ]+){4}$' "a five-field cron expression such as '0 * * * *'"
  check BUILD_WITH '^(cloudbuild|docker)$' "cloudbuild or docker"
  check STATIC_EGRESS '^(true|false)$' "true or false"
  check PUSH_SERVICES_INGRESS '^(all|internal)$' "all or internal"
  check STARK_PIPELINE_RUNNER '^(binary|docker)$' "binary or docker"
  check STARK_KEY_SECRET '^[A-Za-z0-9_-]{1,255}$' "a Secret Manager secret id"

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

# Appends to ENV_PAIRS the variables every signing service needs to reach Stark Bank.
stark_env_pairs() {
  ENV_PAIRS+=("STARK_ACCESS_ID=$STARK_ACCESS_ID" "STARK_ENVIRONMENT=$STARK_ENVIRONMENT"
    "STARK_PRIVATE_KEY_FILE=$STARK_KEY_MOUNT")
  add_optional_env STARK_LANGUAGE STARK_TIMEOUT_SECONDS
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
