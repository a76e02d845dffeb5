#!/usr/bin/env bash
# 30-registry-images.sh: creates the Artifact Registry repository and builds and pushes the
# images of every deployable, tagged $IMAGE_TAG.
#
# The build is skipped when every image of the tag is already in the registry, unless the tag
# ends in -dirty (built from uncommitted changes): such a tag is rebuilt and overwritten.
#
# BUILD_WITH=cloudbuild (default): one `gcloud builds submit` of deploy/cloudbuild.yaml builds
#   the five images natively on linux/amd64, compiling the workspace once; nothing but gcloud
#   is needed locally. Files matching deploy/gcloudignore (target/, .git/, keys) are not uploaded.
#   The build runs as the service account image-builder (20-iam.sh), which gets
#   roles/artifactregistry.writer on this repository and roles/storage.objectViewer on the
#   bucket the source is uploaded to (gs://PROJECT_cloudbuild, created here when missing); its
#   logs go to Cloud Logging only (cloudbuild.yaml), which a build with its own account needs.
# BUILD_WITH=docker: `docker buildx build --platform linux/amd64 --push` from this machine
#   (emulated, hence slow, on an arm64 laptop); gcloud is configured as Docker's credential
#   helper for the registry first.
#
# Usage: deploy/30-registry-images.sh [--dry-run] [--config FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
init "$@"

step "Artifact Registry repository $REPOSITORY in $REGION"
ensure "repository $REPOSITORY" \
  gcloud artifacts repositories describe "$REPOSITORY" "--location=$REGION" "--project=$PROJECT_ID" \
  -- gcloud artifacts repositories create "$REPOSITORY" --repository-format=docker \
  "--location=$REGION" "--project=$PROJECT_ID" "--labels=$LABELS" \
  "--description=Images of the Stark Bank invoice to payout pipeline"

builder="serviceAccount:$(sa_email "$SA_BUILDER")"
if [ "$BUILD_WITH" = cloudbuild ]; then
  step "What Cloud Build, as $SA_BUILDER, may use"
  grant "$builder" roles/artifactregistry.writer "artifacts repositories" "$REPOSITORY" \
    "--location=$REGION" "--project=$PROJECT_ID"
  ensure "bucket $BUILD_BUCKET" \
    gcloud storage buckets describe "$BUILD_BUCKET" "--project=$PROJECT_ID" \
    -- gcloud storage buckets create "$BUILD_BUCKET" "--project=$PROJECT_ID" "--location=$REGION" \
    --uniform-bucket-level-access
  grant "$builder" roles/storage.objectViewer "storage buckets" "$BUILD_BUCKET" "--project=$PROJECT_ID"
fi

step "Images $REGISTRY/*:$IMAGE_TAG"
build=false
case $IMAGE_TAG in
  *-dirty)
    say "tag $IMAGE_TAG was made from uncommitted changes: building"
    build=true
    ;;
  *)
    for image in $IMAGES; do
      if ! exists gcloud artifacts docker images describe "$(image_ref "$image")" "--project=$PROJECT_ID"; then
        build=true
      fi
    done
    ;;
esac
if ! $build; then
  say "every image of tag $IMAGE_TAG is in the registry: nothing to build"
  exit 0
fi
if $DRY_RUN; then
  say "the build below runs only if an image above is missing (or the tag ends in -dirty)"
fi

if [ "$BUILD_WITH" = cloudbuild ]; then
  run gcloud builds submit . "--project=$PROJECT_ID" --config=deploy/cloudbuild.yaml \
    --ignore-file=deploy/gcloudignore "--substitutions=_REGISTRY=$REGISTRY,_TAG=$IMAGE_TAG" \
    "--service-account=projects/$PROJECT_ID/serviceAccounts/$(sa_email "$SA_BUILDER")" \
    "--gcs-source-staging-dir=$BUILD_BUCKET/source"
else
  run gcloud auth configure-docker "$REGISTRY_HOST" --quiet
  for image in $IMAGES; do
    run docker buildx build --platform=linux/amd64 --file=docker/Dockerfile \
      "--build-arg=BIN=$image" "--tag=$(image_ref "$image")" --push .
  done
fi
