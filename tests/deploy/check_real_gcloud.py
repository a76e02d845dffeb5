"""Checks every gcloud command the deploy scripts print against the real gcloud's parser.

The fake gcloud of test_deploy.py knows only the command shapes the scripts use; it cannot tell
whether `--nat-external-ip-pool` or `--startup-probe=httpGet.path=...` exist. The real gcloud
can, offline: it parses and validates every flag (names, choices, mutually exclusive groups,
key=value dictionaries, even the Cloud Build config file) before it looks for credentials. So
each command of the dry-run plans (up.sh in two configurations, teardown.sh), and each gcloud
command of deploy/README.md, is run with an empty gcloud configuration, no account and, where
`unshare -n` works, no network: a command passes when gcloud gets as far as "You do not currently have an active account selected".
`gcloud auth configure-docker` (local only, it edits Docker's configuration) is skipped.

gcloud reads the files of --policy-from-file and --config-from-file only after it has found
credentials, so the alert policies and the dashboard of deploy/monitoring/ are checked here
too: each is decoded, with the installed gcloud's own libraries, into the Cloud Monitoring API
message it must be (AlertPolicy of monitoring v3, Dashboard of monitoring v1), and any field
or enum value that message does not know fails the check.

Run: python3 tests/deploy/check_real_gcloud.py  (or bash deploy/test.sh --real-gcloud).
Needs the Google Cloud CLI; standard library only. Takes about a minute.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NO_ACCOUNT = "You do not currently have an active account selected"
PEM = "-----BEGIN EC PRIVATE KEY-----\nMHQCAQEE\n-----END EC PRIVATE KEY-----\n"
PLACEHOLDERS = {
    "<project-number>": "123456789012",
    "<state>": "ENABLED",
    "<key-version>": "1",
    "<notification-channel>": "projects/acme-stark-1/notificationChannels/1234567890",
    "<alert-policy>": "projects/acme-stark-1/alertPolicies/1234567890",
    "<dashboard>": "projects/123456789012/dashboards/0a1b2c3d-4e5f",
}


def plans(work):
    key = work / "key.pem"
    key.write_text(PEM)
    base = {
        "PROJECT_ID": "acme-stark-1", "REGION": "southamerica-east1", "IMAGE_TAG": "0123456789ab",
        "STARK_ENVIRONMENT": "sandbox", "STARK_ACCESS_ID": "project/1", "STARK_PRIVATE_KEY_FILE": str(key),
        "CAMPAIGN_ID": "c1", "CAMPAIGN_START": "2025-01-01T00:00:00Z", "PAYOUT_NAME": "Stark Bank, S.A.",
        "STARK_WORKSPACE_ID": "6010044957065216", "ALERT_EMAIL": "oncall@example.com",
    }
    # The campaign of 2025 is over: the plans also pause the scheduler jobs.
    variants = [base, dict(base, STATIC_EGRESS="true", BUILD_WITH="docker", PUSH_SERVICES_INGRESS="all",
                           INGESTER_INVOKER_IAM_CHECK="false")]
    for i, values in enumerate(variants):
        config = work / f"config{i}.env"
        config.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))
        for script in ("up.sh", "teardown.sh"):
            result = subprocess.run(["bash", str(REPO / "deploy" / script), "--dry-run", f"--config={config}"],
                                    capture_output=True, text=True, check=True)
            yield result.stdout


def commands(work):
    seen = {}
    for plan in plans(work):
        for line in plan.splitlines():
            words = shlex.split(line, comments=True)
            if not words or words[0] != "gcloud":
                continue
            if words[1:3] == ["auth", "configure-docker"]:
                continue  # local only: it edits Docker's configuration, nothing to validate offline
            fixed = []
            for word in words[1:]:
                for placeholder, value in PLACEHOLDERS.items():
                    word = word.replace(placeholder, value)
                word = re.sub(r"<([a-z-]+)-url>", r"https://\1-x7q2k4dzna-rj.a.run.app", word)
                if "<" in word:
                    raise SystemExit(f"unknown placeholder in: {line}")
                fixed.append(word)
            seen.setdefault(tuple(fixed), line)
    return seen


def readme_commands():
    """The gcloud commands of deploy/README.md (shell blocks and inline code), variables filled in."""
    values = {"$PROJECT_ID": "acme-stark-1", "$REGION": "southamerica-east1", "$CAMPAIGN_ID": "c1",
              "$TAG": "0123456789ab", "$(date -u +%Y-%m-%dT%H:%M:%SZ)": "2026-11-27T10:00:00Z"}
    text = (REPO / "deploy" / "README.md").read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        lines += re.sub(r"\\\n\s*", "", block).splitlines()
    prose = re.sub(r"```.*?```", "", text, flags=re.S).replace("\n", " ")
    # Inline code: only complete commands (naming a project), not mentions such as `gcloud auth login`.
    lines += [c for c in re.findall(r"`(gcloud [^`]+)`", prose) if "--project=" in c]
    found = {}
    for line in lines:
        line = line.strip().split(" > ")[0]
        if not line.startswith("gcloud "):
            continue
        for name, value in values.items():
            line = line.replace(name, value)
        if "$" in line or "<" in line:
            continue  # built in a loop from pulled messages, or a placeholder for the reader
        words = shlex.split(line, comments=True)
        found.setdefault(tuple(words[1:]), line)
    return found


# Run with the gcloud SDK's Python and libraries: decodes each definition into its API message
# and prints the fields (or enum values) the message does not know, one per line.
SCHEMA_CHECK = r"""
import json, sys
from apitools.base.protorpclite import messages as pm
from googlecloudsdk.command_lib.monitoring import util
from googlecloudsdk.generated_clients.apis.monitoring.v1 import monitoring_v1_messages as v1
from googlecloudsdk.generated_clients.apis.monitoring.v3 import monitoring_v3_messages as v3

def unknown(message, path):
    found = [f"{path}.{name}" for name in message.all_unrecognized_fields()]
    for field in message.all_fields():
        value = message.get_assigned_value(field.name)
        if value is None:
            continue
        for i, item in enumerate(value if field.repeated else [value]):
            if isinstance(item, pm.Message):
                found += unknown(item, f"{path}.{field.name}")
    return found

for path in sys.argv[1:]:
    kind = v1.Dashboard if path.endswith("dashboard.json") else v3.AlertPolicy
    with open(path) as f:
        message = util.MessageFromString(f.read(), kind, kind.__name__)
    for field in unknown(message, kind.__name__):
        print(f"{path}: unknown {field}")
"""


def check_monitoring_files():
    """Every JSON definition of deploy/monitoring/ against the API messages of the installed gcloud."""
    gcloud = Path(shutil.which("gcloud")).resolve()
    sdk = gcloud.parents[1]
    lib = sdk / "lib"
    if not (lib / "googlecloudsdk").is_dir():
        print(f"skip monitoring definitions: no gcloud SDK libraries under {sdk}")
        return 0, 1
    python = os.environ.get("CLOUDSDK_PYTHON") or next(
        (str(c) for c in (sdk / "platform" / "bundledpythonunix" / "bin" / "python3",) if c.exists()), sys.executable)
    files = sorted(str(p) for p in (REPO / "deploy" / "monitoring").rglob("*.json"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(lib), str(lib / "third_party")]))
    result = subprocess.run([python, "-c", SCHEMA_CHECK, *files], capture_output=True, text=True, env=env, timeout=120)
    problems = result.stdout.strip().splitlines()
    if result.returncode != 0:
        problems.append(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "schema check crashed")
    for path in files:
        bad = [p for p in problems if p.startswith(path + ":")]
        print(f"{'FAIL' if bad else 'ok  '} {Path(path).relative_to(REPO)} is a valid "
              f"{'Dashboard' if path.endswith('dashboard.json') else 'AlertPolicy'}")
        for line in bad:
            print(f"       {line.split(': ', 1)[1]}")
    stray = [p for p in problems if not any(p.startswith(f + ":") for f in files)]
    for line in stray:
        print(f"FAIL {line}")
    failed = len({p.split(":", 1)[0] for p in problems if ":" in p}) + len(stray)
    return failed, 0


def main():
    gcloud = shutil.which("gcloud")
    if not gcloud:
        print("check_real_gcloud: gcloud is not installed", file=sys.stderr)
        return 2
    isolate = []
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        isolate = ["unshare", "-n"]
    with tempfile.TemporaryDirectory(prefix="real-gcloud-") as tmp:
        work = Path(tmp)
        config_dir = work / "gcloud-config"
        config_dir.mkdir()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CLOUDSDK_", "GOOGLE_", "GCE_")) and k != "CLOUDSDK_CONFIG"}
        env.update({
            "CLOUDSDK_CONFIG": str(config_dir),
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
            "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
            # Nothing a command might write (~/.docker/config.json...) lands in the real home.
            "HOME": str(work),
        })
        todo = commands(work)
        todo.update(readme_commands())

        def check(args):
            result = subprocess.run(isolate + [gcloud, *args], cwd=REPO, env=env, capture_output=True,
                                    text=True, timeout=120, stdin=subprocess.DEVNULL)
            output = result.stdout + result.stderr
            if "component manager" in output and "disabled" in output:
                # e.g. `logs tail` needs the log-streaming component, which a gcloud installed
                # from Debian's packages cannot add: its flags cannot be checked here.
                return args, None, output.strip().splitlines()[:1]
            return args, NO_ACCOUNT in output, output.strip().splitlines()[:3]

        with ThreadPoolExecutor(max_workers=int(os.environ.get("DEPLOY_TEST_JOBS", "2")) * 2) as pool:
            results = list(pool.map(check, todo))
    failed = skipped = 0
    for args, ok, output in results:
        print(f"{'skip' if ok is None else 'ok  ' if ok else 'FAIL'} gcloud {shlex.join(args)}")
        if ok is None:
            skipped += 1
            print(f"       {output[0] if output else ''}")
        elif not ok:
            failed += 1
            for line in output:
                print(f"       {line}")
    definitions_failed, definitions_skipped = check_monitoring_files()
    definitions = len(list((REPO / "deploy" / "monitoring").rglob("*.json")))
    passed = len(results) - failed - skipped + (0 if definitions_skipped else definitions - definitions_failed)
    failed += definitions_failed
    skipped += definitions_skipped
    print(f"real-gcloud: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
