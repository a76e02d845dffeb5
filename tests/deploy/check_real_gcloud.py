"""Checks every gcloud command the deploy scripts print against the real gcloud's parser.

The fake gcloud of test_deploy.py knows only the command shapes the scripts use; it cannot tell
whether `--nat-external-ip-pool` or `--startup-probe=httpGet.path=...` exist. The real gcloud
can, offline: it parses and validates every flag (names, choices, mutually exclusive groups,
key=value dictionaries, even the Cloud Build config file) before it looks for credentials. So
each command of the dry-run plans (up.sh in two configurations, teardown.sh), and each gcloud
command of deploy/README.md, is run with an empty gcloud configuration, no account and, where
`unshare -n` works, no network: a command passes when gcloud gets as far as "You do not currently have an active account selected".
`gcloud auth configure-docker` (local only, it edits Docker's configuration) is skipped.

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
    "<latest-key-version>": "1",
}


def plans(work):
    key = work / "key.pem"
    key.write_text(PEM)
    base = {
        "PROJECT_ID": "acme-stark-1", "REGION": "southamerica-east1", "IMAGE_TAG": "0123456789ab",
        "STARK_ENVIRONMENT": "sandbox", "STARK_ACCESS_ID": "project/1", "STARK_PRIVATE_KEY_FILE": str(key),
        "CAMPAIGN_ID": "c1", "CAMPAIGN_START": "2025-01-01T00:00:00Z", "PAYOUT_NAME": "Stark Bank, S.A.",
    }
    variants = [base, dict(base, STATIC_EGRESS="true", BUILD_WITH="docker", PUSH_SERVICES_INGRESS="all")]
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
    print(f"real-gcloud: {len(results) - failed - skipped} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
