#!/usr/bin/env bash
# 45-egress.sh: with STATIC_EGRESS=true, gives the services one fixed outbound IP address to
# allow-list at Stark Bank, and prints it.
#
#   VPC network $EGRESS_NETWORK (custom subnets)
#   subnet $EGRESS_SUBNET ($EGRESS_SUBNET_RANGE, Private Google Access on, so that calls to
#     Google APIs such as Pub/Sub do not go through NAT)
#   reserved regional address $EGRESS_ADDRESS
#   Cloud Router $EGRESS_ROUTER with Cloud NAT $EGRESS_NAT translating that subnet to that address
#
# 50-services.sh then attaches invoice-sender, webhook-ingester and money-sender to the subnet
# with Direct VPC egress and --vpc-egress=all-traffic: everything they send to Stark leaves
# through the NAT, from the reserved address. The spammer job talks only to Pub/Sub and stays
# off the VPC. Runs before 50-services.sh, which needs the subnet. With STATIC_EGRESS=false it
# does nothing (teardown.sh removes these resources if an earlier deploy made them).
#
# Any of these may already exist (say EGRESS_NETWORK=default): an existing resource is used as
# it is. The ones created here carry the description "$EGRESS_MARK", and teardown.sh deletes
# only those.
#
# Usage: deploy/45-egress.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

if ! is_true "$STATIC_EGRESS"; then
  step "Static egress IP: off (STATIC_EGRESS=false)"
  exit 0
fi

step "Static egress IP through Cloud NAT"
ensure "network $EGRESS_NETWORK" \
  gcloud compute networks describe "$EGRESS_NETWORK" "--project=$PROJECT_ID" \
  -- gcloud compute networks create "$EGRESS_NETWORK" "--project=$PROJECT_ID" --subnet-mode=custom \
  "--description=$EGRESS_MARK"

ensure "subnet $EGRESS_SUBNET" \
  gcloud compute networks subnets describe "$EGRESS_SUBNET" "--region=$REGION" "--project=$PROJECT_ID" \
  -- gcloud compute networks subnets create "$EGRESS_SUBNET" "--region=$REGION" "--project=$PROJECT_ID" \
  "--network=$EGRESS_NETWORK" "--range=$EGRESS_SUBNET_RANGE" --enable-private-ip-google-access \
  "--description=$EGRESS_MARK"

ensure "address $EGRESS_ADDRESS" \
  gcloud compute addresses describe "$EGRESS_ADDRESS" "--region=$REGION" "--project=$PROJECT_ID" \
  -- gcloud compute addresses create "$EGRESS_ADDRESS" "--region=$REGION" "--project=$PROJECT_ID" \
  "--description=$EGRESS_MARK"

ensure "router $EGRESS_ROUTER" \
  gcloud compute routers describe "$EGRESS_ROUTER" "--region=$REGION" "--project=$PROJECT_ID" \
  -- gcloud compute routers create "$EGRESS_ROUTER" "--region=$REGION" "--project=$PROJECT_ID" \
  "--network=$EGRESS_NETWORK" "--description=$EGRESS_MARK"

ensure "NAT $EGRESS_NAT" \
  gcloud compute routers nats describe "$EGRESS_NAT" "--router=$EGRESS_ROUTER" "--region=$REGION" "--project=$PROJECT_ID" \
  -- gcloud compute routers nats create "$EGRESS_NAT" "--router=$EGRESS_ROUTER" "--region=$REGION" "--project=$PROJECT_ID" \
  "--nat-custom-subnet-ip-ranges=$EGRESS_SUBNET" "--nat-external-ip-pool=$EGRESS_ADDRESS" \
  -- gcloud compute routers nats update "$EGRESS_NAT" "--router=$EGRESS_ROUTER" "--region=$REGION" "--project=$PROJECT_ID" \
  "--nat-custom-subnet-ip-ranges=$EGRESS_SUBNET" "--nat-external-ip-pool=$EGRESS_ADDRESS"

ip=$(value_of '<egress-ip>' gcloud compute addresses describe "$EGRESS_ADDRESS" "--region=$REGION" \
  "--project=$PROJECT_ID" '--format=value(address)')
say "outbound IP of invoice-sender, webhook-ingester and money-sender: $ip"
say "allow-list it for your Stark Bank project before the services call Stark"
