"""Tests of deploy/: the scripts run for real against a fake gcloud and a fake stark-pipeline
(tests/deploy/fakes.py), which record every call and keep the resources in a state file, and in
--dry-run, where nothing may run at all.

Run: python3 tests/deploy/test_deploy.py  (or bash deploy/test.sh, which also runs shellcheck
and hadolint). Standard library only.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
FAKES = Path(__file__).resolve().with_name("fakes.py")

PROJECT = "acme-stark-1"
REGION = "southamerica-east1"
PROJECT_NUMBER = "123456789012"
AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
KEY_MOUNT = "/secrets/stark/private-key.pem"
SECRET = "stark-private-key"
SERVICES = ["invoice-sender", "webhook-ingester", "money-sender"]
STEPS = ["10-apis.sh", "20-registry-images.sh", "30-iam.sh", "40-secrets.sh", "45-egress.sh",
         "50-services.sh", "60-pubsub.sh", "70-scheduler.sh", "80-webhook.sh"]
# Verbs that create or grant something.
WRITES = {"create", "add-iam-policy-binding", "add", "submit", "delete"}

PEM = "-----BEGIN EC PRIVATE KEY-----\nMHQCAQEEIFAKEFAKEFAKE\n-----END EC PRIVATE KEY-----\n"


def sa(name):
    return f"serviceAccount:{name}@{PROJECT}.iam.gserviceaccount.com"


def email(name):
    return f"{name}@{PROJECT}.iam.gserviceaccount.com"


def flags(argv):
    """--name=value flags of one command as a dict (boolean flags map to True)."""
    out = {}
    for arg in argv:
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            out[name] = value if sep else True
    return out


def env_vars(argv):
    """The NAME=VALUE pairs of a --set-env-vars flag, honouring gcloud's ^DELIM^ escape."""
    value = flags(argv).get("set-env-vars", "")
    delim = ","
    match = re.match(r"\^([^^]+)\^", value)
    if match:
        delim, value = match.group(1), value[match.end():]
    return dict(pair.split("=", 1) for pair in value.split(delim) if pair)


def positionals(argv):
    return [a for a in argv if not a.startswith("--")]


class Sandbox:
    """A temporary directory with the fakes first on PATH, a key, a config and a state file."""

    def __init__(self, **config):
        self.dir = Path(tempfile.mkdtemp(prefix="deploy-test-"))
        self.bin = self.dir / "bin"
        self.bin.mkdir()
        for program in ("gcloud", "stark-pipeline", "docker"):
            wrapper = self.bin / program
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKES}" {program} "$@"\n')
            wrapper.chmod(0o755)
        self.key = self.dir / "private-key.pem"
        self.key.write_text(PEM)
        self.log = self.dir / "calls.log"
        self.state_file = self.dir / "state.json"
        values = {
            "PROJECT_ID": PROJECT,
            "REGION": REGION,
            "IMAGE_TAG": "0123456789ab",
            "STARK_ENVIRONMENT": "sandbox",
            "STARK_ACCESS_ID": "project/5656565656565656",
            "STARK_PRIVATE_KEY_FILE": str(self.key),
            "CAMPAIGN_ID": "campaign-test",
            "CAMPAIGN_START": "2025-01-01T00:00:00Z",
            "STARK_PIPELINE_BIN": str(self.bin / "stark-pipeline"),
        }
        values.update(config)
        self.config = self.dir / "config.env"
        self.config.write_text("".join(f"{k}={shlex.quote(str(v))}\n" for k, v in values.items()))
        self.env = dict(os.environ)
        self.env.update({
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "FAKE_LOG": str(self.log),
            "FAKE_STATE": str(self.state_file),
            "DEPLOY_RETRY_DELAY": "0",
        })
        for variable in ("DEPLOY_CONFIG", "FAKE_PROVISION_BROKEN", "GOOGLE_APPLICATION_CREDENTIALS"):
            self.env.pop(variable, None)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, script, *args, check=True, env=None):
        result = subprocess.run(
            ["bash", str(DEPLOY / script), f"--config={self.config}", *args],
            cwd=self.dir, env=dict(self.env, **(env or {})), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{script} {args} exited {result.returncode}\n"
                                 f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
        return result

    def calls(self):
        """Every recorded call so far, as argv lists (program first)."""
        if not self.log.exists():
            return []
        return [shlex.split(line) for line in self.log.read_text().splitlines()]

    def state(self):
        return json.loads(self.state_file.read_text())

    def resource(self, kind, name, location=""):
        return self.state()["resources"].get(f"{kind}|{location}|{name}")

    def bindings(self, kind, name, location=""):
        return sorted(map(tuple, self.state()["iam"].get(f"{kind}|{location}|{name}", [])))


def gcloud_calls(calls):
    return [c[1:] for c in calls if c[0] == "gcloud"]


def find(calls, *words):
    """The gcloud calls whose positional words start with WORDS."""
    n = len(words)
    return [c for c in gcloud_calls(calls) if positionals(c)[:n] == list(words)]


def one(calls, *words):
    found = find(calls, *words)
    assert len(found) == 1, f"expected one `gcloud {' '.join(words)}`, got {len(found)}"
    return found[0]


def verb_of(argv):
    return next((p for p in positionals(argv) if p in {
        "describe", "create", "delete", "deploy", "update", "add-iam-policy-binding",
        "get-iam-policy", "enable", "submit", "access", "add", "pause", "resume"}), None)


class FirstDeployThenRedeploy(unittest.TestCase):
    """up.sh twice on an empty project: the first run builds everything, the second changes nothing."""

    @classmethod
    def setUpClass(cls):
        cls.sb = Sandbox(PAYOUT_NAME="Stark Bank, S.A.")
        cls.first_run = cls.sb.run("up.sh")
        cls.first = cls.sb.calls()
        cls.state_after_first = cls.sb.state()
        cls.sb.run("up.sh")
        cls.second = cls.sb.calls()[len(cls.first):]

    @classmethod
    def tearDownClass(cls):
        cls.sb.cleanup()

    def url(self, service):
        return self.sb.resource("run services", service, REGION)["status"]["url"]

    def deploy_of(self, service):
        return one(self.first, "run", "deploy", service)

    def test_first_run_creates_every_resource(self):
        created = {(" ".join(positionals(c)[:-1]), positionals(c)[-1]) for c in find(self.first) if verb_of(c) == "create"}
        self.assertEqual(created, {
            ("artifacts repositories create", "stark-pipeline"),
            *(("iam service-accounts create", n) for n in
              ["invoice-spammer", "invoice-sender", "webhook-ingester", "money-sender", "pubsub-push", "spammer-scheduler"]),
            ("secrets create", SECRET),
            ("scheduler jobs create http", "invoice-spammer-hourly"),
        })
        self.assertEqual(len(find(self.first, "builds", "submit")), 1)
        self.assertEqual(len(find(self.first, "secrets", "versions", "add")), 1)
        self.assertEqual(len(find(self.first, "run", "jobs", "deploy")), 1)

    def test_every_create_is_preceded_by_a_describe_of_the_same_resource(self):
        calls = gcloud_calls(self.first)
        for i, call in enumerate(calls):
            if verb_of(call) != "create":
                continue
            words = positionals(call)
            group = words[:words.index("create")]
            name = words[-1]
            describes = [c for c in calls[:i] if verb_of(c) == "describe" and positionals(c)[:len(group)] == group
                         and (positionals(c)[-1] == name or positionals(c)[-1].startswith(name + "@"))]
            self.assertTrue(describes, f"no describe before {shlex.join(call)}")

    def test_second_run_creates_nothing(self):
        writes = [shlex.join(c) for c in gcloud_calls(self.second) if verb_of(c) in WRITES]
        self.assertEqual(writes, [], "the second run wrote:\n" + "\n".join(writes))
        self.assertEqual(self.sb.state()["resources"], self.state_after_first["resources"])
        self.assertEqual(self.sb.state()["iam"], self.state_after_first["iam"])

    def test_second_run_only_reads_deploys_and_updates(self):
        verbs = {verb_of(c) for c in gcloud_calls(self.second)}
        self.assertLessEqual(verbs, {"describe", "get-iam-policy", "access", "enable", "deploy", "update"})
        self.assertEqual([positionals(c)[:4] for c in find(self.second, "scheduler", "jobs", "update")],
                         [["scheduler", "jobs", "update", "http"]])

    def test_private_services_require_authentication_and_the_ingester_is_public(self):
        for service in ("invoice-sender", "money-sender"):
            f = flags(self.deploy_of(service))
            self.assertIn("no-allow-unauthenticated", f, service)
            self.assertNotIn("allow-unauthenticated", f, service)
            self.assertEqual(f["ingress"], "internal", service)
        f = flags(self.deploy_of("webhook-ingester"))
        self.assertIn("allow-unauthenticated", f)
        self.assertNotIn("no-allow-unauthenticated", f)
        self.assertEqual(f["ingress"], "all")

    def test_only_the_push_identity_may_invoke_the_private_services(self):
        for service in ("invoice-sender", "money-sender"):
            self.assertEqual(self.sb.bindings("run services", service, REGION),
                             [("roles/run.invoker", sa("pubsub-push"))])

    def test_each_deployable_runs_as_its_own_service_account(self):
        for service in SERVICES:
            self.assertEqual(flags(self.deploy_of(service))["service-account"], email(service))
        job = one(self.first, "run", "jobs", "deploy")
        self.assertEqual(flags(job)["service-account"], email("invoice-spammer"))

    def test_images_come_from_the_registry_with_the_configured_tag(self):
        registry = f"{REGION}-docker.pkg.dev/{PROJECT}/stark-pipeline"
        for service in SERVICES:
            self.assertEqual(flags(self.deploy_of(service))["image"], f"{registry}/{service}:0123456789ab")
        build = flags(one(self.first, "builds", "submit"))
        self.assertEqual(build["config"], "deploy/cloudbuild.yaml")
        self.assertEqual(build["substitutions"], f"_REGISTRY={registry},_TAG=0123456789ab")

    def test_stark_key_is_mounted_as_a_file_in_the_signing_services_only(self):
        for service in SERVICES:
            argv = self.deploy_of(service)
            self.assertEqual(flags(argv)["set-secrets"], f"{KEY_MOUNT}={SECRET}:latest", service)
            self.assertEqual(env_vars(argv)["STARK_PRIVATE_KEY_FILE"], KEY_MOUNT, service)
            self.assertEqual(env_vars(argv)["STARK_ACCESS_ID"], "project/5656565656565656", service)
            self.assertEqual(env_vars(argv)["STARK_KEY_SECRET_VERSION"], "1", service)
        job = one(self.first, "run", "jobs", "deploy")
        self.assertNotIn("set-secrets", flags(job))
        self.assertFalse([k for k in env_vars(job) if k.startswith("STARK_")])

    def test_key_is_uploaded_by_path_and_never_appears_on_a_command_line(self):
        add = flags(one(self.first, "secrets", "versions", "add"))
        self.assertEqual(add["data-file"], str(self.sb.key))
        log = self.sb.log.read_text()
        self.assertNotIn("MHQCAQEEIFAKEFAKEFAKE", log)
        self.assertNotIn("MHQCAQEEIFAKEFAKEFAKE", self.first_run.stdout + self.first_run.stderr)

    def test_secret_is_readable_by_the_three_signing_services_only(self):
        self.assertEqual(self.sb.bindings("secrets", SECRET), sorted(
            ("roles/secretmanager.secretAccessor", sa(n)) for n in ["invoice-sender", "webhook-ingester", "money-sender"]))

    def test_pubsub_roles_are_granted_per_topic_and_subscription(self):
        self.assertEqual(self.sb.bindings("pubsub topics", "pending_invoices"),
                         [("roles/pubsub.publisher", sa("invoice-spammer"))])
        self.assertEqual(self.sb.bindings("pubsub topics", "paid_invoices"),
                         [("roles/pubsub.publisher", sa("webhook-ingester"))])
        for topic in ("pending_invoices-dead-letter", "paid_invoices-dead-letter"):
            self.assertEqual(self.sb.bindings("pubsub topics", topic), [("roles/pubsub.publisher", AGENT)])
        for subscription in ("pending_invoices-invoice-sender", "paid_invoices-money-sender"):
            self.assertEqual(self.sb.bindings("pubsub subscriptions", subscription), [("roles/pubsub.subscriber", AGENT)])
        self.assertEqual(self.sb.bindings("iam service-accounts", email("pubsub-push")),
                         [("roles/iam.serviceAccountTokenCreator", AGENT)])

    def test_nothing_is_granted_at_project_level(self):
        self.assertEqual(find(self.first, "projects", "add-iam-policy-binding"), [])
        granted = {positionals(c)[0] + " " + positionals(c)[1] for c in gcloud_calls(self.first)
                   if verb_of(c) == "add-iam-policy-binding"}
        self.assertEqual(granted, {"iam service-accounts", "secrets add-iam-policy-binding", "run services",
                                   "pubsub topics", "pubsub subscriptions", "run jobs"})

    def test_provision_gets_oidc_identity_audiences_and_dead_letter_attempts(self):
        provisions = [c[1:] for c in self.first if c[0] == "stark-pipeline" and c[1:2] == ["provision"]]
        self.assertEqual(len(provisions), 1)
        f = flags(provisions[0])
        sender, money = self.url("invoice-sender"), self.url("money-sender")
        self.assertEqual(f, {
            "project": PROJECT,
            "invoice-sender-url": f"{sender}/push",
            "money-sender-url": f"{money}/push",
            "push-service-account": email("pubsub-push"),
            "audience-invoice-sender": sender,
            "audience-money-sender": money,
            "max-delivery-attempts": "5",
        })

    def test_subscriptions_are_read_back_for_dead_letter_and_seven_day_retention(self):
        checked = {}
        for call in find(self.first, "pubsub", "subscriptions", "describe"):
            checked[positionals(call)[-1]] = flags(call)["format"]
        for subscription in ("pending_invoices-invoice-sender", "paid_invoices-money-sender"):
            for field in ("deadLetterPolicy.deadLetterTopic", "deadLetterPolicy.maxDeliveryAttempts",
                          "messageRetentionDuration", "retainAckedMessages",
                          "pushConfig.oidcToken.serviceAccountEmail", "pushConfig.oidcToken.audience"):
                self.assertIn(field, checked[subscription])
        for subscription in ("pending_invoices-dead-letter", "paid_invoices-dead-letter"):
            self.assertIn("messageRetentionDuration", checked[subscription])
            self.assertIn("retainAckedMessages", checked[subscription])
        sub = self.sb.resource("pubsub subscriptions", "paid_invoices-money-sender")
        self.assertEqual(sub["deadLetterPolicy"]["deadLetterTopic"], f"projects/{PROJECT}/topics/paid_invoices-dead-letter")
        self.assertEqual(sub["messageRetentionDuration"], "604800s")

    def test_scheduler_runs_the_job_every_hour_as_the_scheduler_identity(self):
        create = one(self.first, "scheduler", "jobs", "create")
        f = flags(create)
        self.assertEqual(positionals(create)[-1], "invoice-spammer-hourly")
        self.assertEqual(f["schedule"], "0 * * * *")
        self.assertEqual(f["location"], REGION)
        self.assertEqual(f["uri"], f"https://run.googleapis.com/v2/projects/{PROJECT}/locations/{REGION}/jobs/invoice-spammer:run")
        self.assertEqual(f["http-method"], "POST")
        self.assertEqual(f["oauth-service-account-email"], email("spammer-scheduler"))
        self.assertEqual(f["oauth-token-scope"], "https://www.googleapis.com/auth/cloud-platform")
        self.assertEqual(self.sb.bindings("run jobs", "invoice-spammer", REGION),
                         [("roles/run.invoker", sa("spammer-scheduler"))])

    def test_job_carries_the_campaign_window_and_retries(self):
        job = one(self.first, "run", "jobs", "deploy")
        f = flags(job)
        self.assertEqual(f["max-retries"], "3")
        self.assertEqual(f["tasks"], "1")
        env = env_vars(job)
        self.assertEqual({k: env[k] for k in ("CAMPAIGN_ID", "CAMPAIGN_START", "CAMPAIGN_HOURS",
                                              "INVOICE_AMOUNT_MIN_CENTS", "INVOICE_AMOUNT_MAX_CENTS", "PUBSUB_PROJECT_ID")},
                         {"CAMPAIGN_ID": "campaign-test", "CAMPAIGN_START": "2025-01-01T00:00:00Z",
                          "CAMPAIGN_HOURS": "24", "INVOICE_AMOUNT_MIN_CENTS": "1000",
                          "INVOICE_AMOUNT_MAX_CENTS": "50000", "PUBSUB_PROJECT_ID": PROJECT})

    def test_services_get_their_configuration(self):
        ingester = env_vars(self.deploy_of("webhook-ingester"))
        self.assertEqual(ingester["PUBSUB_PROJECT_ID"], PROJECT)
        for service in SERVICES:
            env = env_vars(self.deploy_of(service))
            self.assertEqual(env["LOG_FORMAT"], "json")
            self.assertEqual(env["GOOGLE_CLOUD_PROJECT"], PROJECT)
            self.assertNotIn("PORT", env, "Cloud Run sets PORT itself")
            self.assertTrue(flags(self.deploy_of(service))["startup-probe"].startswith("httpGet.path=/healthz"))
            self.assertIn("clear-network", flags(self.deploy_of(service)))

    def test_a_value_with_a_comma_is_passed_with_gcloud_alternate_delimiter(self):
        argv = self.deploy_of("money-sender")
        self.assertTrue(flags(argv)["set-env-vars"].startswith("^|^"))
        self.assertEqual(env_vars(argv)["PAYOUT_NAME"], "Stark Bank, S.A.")

    def test_webhook_registered_once_at_the_ingester_url(self):
        registers = [c for c in self.first + self.second if c[0] == "stark-pipeline" and c[1:3] == ["webhook", "register"]]
        self.assertEqual(len(registers), 2)
        expected = f"{self.url('webhook-ingester')}/webhook"
        self.assertEqual(flags(registers[0])["url"], expected)
        self.assertEqual(self.sb.state()["webhooks"], [expected])

    def test_dry_run_prints_every_command_this_deploy_ran(self):
        dry = Sandbox(PAYOUT_NAME="Stark Bank, S.A.")
        try:
            plan = dry.run("up.sh", "--dry-run").stdout
            self.assertEqual(dry.calls(), [], "a dry run executed something")
            self.assertFalse(dry.state_file.exists())
        finally:
            dry.cleanup()
        planned = set()
        for line in plan.splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"env|[A-Z_]+=.*", words[0]):
                words = words[1:]  # stark-pipeline webhook register runs under `env STARK_...=...`
            if words:
                words[0] = os.path.basename(words[0])
                planned.add(tuple(a.replace(str(dry.dir), "<sandbox>") for a in words))
        # Values that only a real run knows are placeholders in the plan.
        replacements = {str(self.sb.dir): "<sandbox>", PROJECT_NUMBER: "<project-number>",
                        "STARK_KEY_SECRET_VERSION=1": "STARK_KEY_SECRET_VERSION=<latest-key-version>"}
        for service in SERVICES:
            replacements[self.url(service)] = f"<{service}-url>"
        missing = []
        for call in self.first:
            normalised = []
            for arg in call:
                for value, placeholder in replacements.items():
                    arg = arg.replace(value, placeholder)
                normalised.append(arg)
            if tuple(normalised) not in planned:
                missing.append(shlex.join(normalised))
        self.assertEqual(missing, [], "run but not in the dry-run plan:\n" + "\n".join(missing))
        for needle in ("gcloud run deploy invoice-sender", "--no-allow-unauthenticated", "--allow-unauthenticated",
                       "gcloud scheduler jobs create http", "stark-pipeline provision", "webhook register",
                       "gcloud secrets versions add", "gcloud builds submit"):
            self.assertIn(needle, plan)

    def test_every_gcloud_call_names_the_project(self):
        for call in gcloud_calls(self.first + self.second):
            if positionals(call)[:2] != ["projects", "describe"]:
                self.assertEqual(flags(call).get("project"), PROJECT, shlex.join(call))

    def test_summary_names_the_urls(self):
        self.assertIn(f"{self.url('webhook-ingester')}/webhook", self.first_run.stderr)


class DryRun(unittest.TestCase):
    """--dry-run executes nothing (no gcloud, docker or stark-pipeline call at all) and prints every command."""

    def setUp(self):
        self.sb = Sandbox()

    def tearDown(self):
        self.sb.cleanup()

    def plan_commands(self, stdout):
        commands = []
        for line in stdout.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
        return commands

    def test_every_script_supports_dry_run(self):
        scripts = sorted(p.name for p in DEPLOY.glob("*.sh") if p.name not in ("lib.sh", "test.sh"))
        self.assertEqual(set(scripts), set(STEPS) | {"up.sh", "teardown.sh"})
        for script in scripts:
            result = self.sb.run(script, "--dry-run")
            self.assertIn("# ===", result.stdout, script)
            self.assertEqual(self.sb.calls(), [], f"{script} --dry-run executed something")

    def test_teardown_dry_run_needs_no_confirmation_and_prints_the_deletes(self):
        plan = self.sb.run("teardown.sh", "--dry-run").stdout
        self.assertEqual(self.sb.calls(), [])
        for needle in ("gcloud scheduler jobs delete invoice-spammer-hourly", "gcloud run services delete webhook-ingester",
                       "gcloud pubsub topics delete paid_invoices-dead-letter", f"gcloud secrets delete {SECRET}",
                       "gcloud iam service-accounts delete pubsub-push@", "gcloud artifacts repositories delete"):
            self.assertIn(needle, plan)

    def test_static_egress_docker_build_and_docker_cli(self):
        sb = Sandbox(STATIC_EGRESS="true", BUILD_WITH="docker", STARK_PIPELINE_RUNNER="docker")
        try:
            plan = sb.run("up.sh", "--dry-run").stdout
            self.assertEqual(sb.calls(), [])
        finally:
            sb.cleanup()
        commands = self.plan_commands(plan)
        builds = [c for c in commands if c[:3] == ["docker", "buildx", "build"]]
        self.assertEqual(len(builds), 5)
        for build in builds:
            self.assertIn("--platform=linux/amd64", build)
            self.assertIn("--push", build)
            self.assertIn("--file=docker/Dockerfile", build)
        self.assertIn("compute.googleapis.com", plan)
        self.assertIn("gcloud compute routers nats create stark-pipeline-nat", plan)
        self.assertIn("--vpc-egress=all-traffic", plan)
        runs = [c for c in commands if c[:2] == ["docker", "run"]]
        self.assertEqual([c[c.index(next(a for a in c if a.endswith(":0123456789ab"))) + 1] for c in runs],
                         ["provision", "webhook"])


class StaticEgress(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sb = Sandbox(STATIC_EGRESS="true")
        cls.result = cls.sb.run("up.sh")
        cls.first = cls.sb.calls()
        cls.sb.run("up.sh")
        cls.second = cls.sb.calls()[len(cls.first):]

    @classmethod
    def tearDownClass(cls):
        cls.sb.cleanup()

    def test_creates_network_subnet_address_router_and_nat(self):
        f = flags(one(self.first, "compute", "networks", "create"))
        self.assertEqual(f["subnet-mode"], "custom")
        f = flags(one(self.first, "compute", "networks", "subnets", "create"))
        self.assertEqual(f["network"], "stark-pipeline")
        self.assertIn("enable-private-ip-google-access", f)
        one(self.first, "compute", "addresses", "create")
        self.assertEqual(flags(one(self.first, "compute", "routers", "create"))["network"], "stark-pipeline")
        f = flags(one(self.first, "compute", "routers", "nats", "create"))
        self.assertEqual(f["router"], "stark-pipeline-router")
        self.assertEqual(f["nat-external-ip-pool"], "stark-pipeline-egress-ip")
        self.assertEqual(f["nat-custom-subnet-ip-ranges"], "stark-pipeline-egress")
        self.assertIn("compute.googleapis.com", one(self.first, "services", "enable"))

    def test_egress_exists_before_the_services_use_it(self):
        calls = gcloud_calls(self.first)
        nat = next(i for i, c in enumerate(calls) if positionals(c)[:4] == ["compute", "routers", "nats", "create"])
        deploy = next(i for i, c in enumerate(calls) if positionals(c)[:2] == ["run", "deploy"])
        self.assertLess(nat, deploy)

    def test_services_send_all_traffic_through_the_subnet(self):
        for service in SERVICES:
            f = flags(one(self.first, "run", "deploy", service))
            self.assertEqual((f["network"], f["subnet"], f["vpc-egress"]),
                             ("stark-pipeline", "stark-pipeline-egress", "all-traffic"), service)
            self.assertNotIn("clear-network", f)

    def test_prints_the_ip_to_allow_list(self):
        self.assertIn("203.0.113.7", self.result.stderr)
        self.assertIn("allow-list", self.result.stderr)

    def test_second_run_creates_nothing_and_updates_the_nat(self):
        self.assertEqual([shlex.join(c) for c in gcloud_calls(self.second) if verb_of(c) in WRITES], [])
        self.assertEqual(len(find(self.second, "compute", "routers", "nats", "update")), 1)


class Teardown(unittest.TestCase):
    def test_deletes_what_deploy_created_and_a_second_teardown_deletes_nothing(self):
        sb = Sandbox(STATIC_EGRESS="true")
        try:
            sb.run("up.sh")
            before = len(sb.calls())
            refused = sb.run("teardown.sh", check=False)  # no --yes, and no terminal to ask on
            self.assertNotEqual(refused.returncode, 0)
            self.assertIn("--yes", refused.stderr)
            self.assertEqual(sb.calls()[before:], [])
            sb.run("teardown.sh", "--yes")
            left = sorted(k for k in sb.state()["resources"] if not k.startswith("services||"))
            self.assertEqual(left, [])
            self.assertEqual(sb.state()["iam"], {})
            deleted = [c for c in gcloud_calls(sb.calls()[before:]) if verb_of(c) == "delete"]
            self.assertTrue(all("quiet" in flags(c) for c in deleted))
            middle = len(sb.calls())
            sb.run("teardown.sh", "--yes")
            again = [shlex.join(c) for c in gcloud_calls(sb.calls()[middle:]) if verb_of(c) in WRITES]
            self.assertEqual(again, [])
        finally:
            sb.cleanup()

    def test_keeps_images_and_a_network_it_did_not_make(self):
        sb = Sandbox(STATIC_EGRESS="true", EGRESS_NETWORK="default")
        try:
            sb.state_file.write_text(json.dumps({"resources": {
                "compute networks||default": {"description": "Default network for the project"}}, "iam": {}, "webhooks": []}))
            sb.run("20-registry-images.sh")
            sb.run("45-egress.sh")
            self.assertEqual(find(sb.calls(), "compute", "networks", "create"), [])
            sb.run("teardown.sh", "--yes", "--keep-images")
            self.assertIsNotNone(sb.resource("compute networks", "default"))
            self.assertIsNotNone(sb.resource("artifacts repositories", "stark-pipeline", REGION))
            self.assertIsNone(sb.resource("compute networks subnets", "stark-pipeline-egress", REGION))
        finally:
            sb.cleanup()


class AfterDeploy(unittest.TestCase):
    """Steps re-run on a deployed project: secret versions, and the check of provision's work."""

    @classmethod
    def setUpClass(cls):
        cls.sb = Sandbox()
        cls.sb.run("up.sh")

    @classmethod
    def tearDownClass(cls):
        cls.sb.cleanup()

    def test_a_key_version_is_added_only_when_the_key_file_changes(self):
        sb = self.sb
        original = sb.key.read_text()
        try:
            count = len(sb.calls())
            sb.run("40-secrets.sh")
            self.assertEqual(find(sb.calls()[count:], "secrets", "versions", "add"), [])
            sb.key.write_text(PEM.replace("FAKEFAKEFAKE", "ROTATEDROTATED"))
            count = len(sb.calls())
            sb.run("40-secrets.sh")
            self.assertEqual(len(find(sb.calls()[count:], "secrets", "versions", "add")), 1)
            self.assertEqual(len(sb.resource("secrets", SECRET)["versions"]), 2)
            self.assertEqual(sb.resource("secrets", SECRET)["versions"][-1], sb.key.read_text())
            # The services read the key at start: the new version must roll out new revisions.
            count = len(sb.calls())
            sb.run("50-services.sh")
            for service in SERVICES:
                self.assertEqual(env_vars(one(sb.calls()[count:], "run", "deploy", service))["STARK_KEY_SECRET_VERSION"], "2")
        finally:
            sb.key.write_text(original)

    # 60-pubsub.sh stops when stark-pipeline provision did not set what the pipeline relies on.
    def check_broken(self, what, field):
        result = self.sb.run("60-pubsub.sh", check=False, env={"FAKE_PROVISION_BROKEN": what})
        self.assertNotEqual(result.returncode, 0, what)
        self.assertIn("is not as the pipeline needs it", result.stderr)
        self.assertIn(field, result.stderr)

    def test_missing_retention_fails(self):
        self.check_broken("retention", "messageRetentionDuration")

    def test_missing_dead_letter_policy_fails(self):
        self.check_broken("dead-letter", "deadLetterPolicy")

    def test_missing_oidc_token_fails(self):
        self.check_broken("oidc", "oidcToken")

    def test_correct_topology_passes(self):
        self.sb.run("60-pubsub.sh")


class Configuration(unittest.TestCase):
    def setUp(self):
        self.sb = Sandbox()

    def tearDown(self):
        self.sb.cleanup()

    def rejects(self, message, script="up.sh", **config):
        sb = Sandbox(**config)
        try:
            result = sb.run(script, "--dry-run", check=False)
            self.assertNotEqual(result.returncode, 0)
            self.assertIn(message, result.stderr)
            self.assertEqual(sb.calls(), [])
        finally:
            sb.cleanup()

    def test_invalid_values_are_refused_by_name(self):
        self.rejects("PROJECT_ID is not set", PROJECT_ID="")
        self.rejects("CAMPAIGN_START=yesterday is invalid", CAMPAIGN_START="yesterday")
        self.rejects("CAMPAIGN_ID=Campaign_1 is invalid", CAMPAIGN_ID="Campaign_1")
        self.rejects("MAX_DELIVERY_ATTEMPTS=3 is invalid", MAX_DELIVERY_ATTEMPTS="3")
        self.rejects("STARK_PRIVATE_KEY_FILE=/nonexistent.pem is not a readable file", STARK_PRIVATE_KEY_FILE="/nonexistent.pem")
        self.rejects("exceeds INVOICE_AMOUNT_MAX_CENTS", INVOICE_AMOUNT_MIN_CENTS="900", INVOICE_AMOUNT_MAX_CENTS="800")
        self.rejects("STATIC_EGRESS=yes is invalid", STATIC_EGRESS="yes")

    def test_the_environment_cannot_slip_values_into_the_deploy(self):
        leftovers = {"PAYOUT_ACCOUNT_NUMBER": "999", "RUST_LOG": "trace", "STATIC_EGRESS": "true",
                     "REGION": "us-central1", "STARK_WORKSPACE_ID": "1"}
        plan = self.sb.run("50-services.sh", "--dry-run", env=leftovers).stdout
        for value in ("999", "trace", "us-central1", "STARK_WORKSPACE_ID", "--vpc-egress"):
            self.assertNotIn(value, plan)
        # IMAGE_TAG may be set for one run (rolling back) when the config leaves it empty.
        sb = Sandbox(IMAGE_TAG="")
        try:
            self.assertIn(":rollback-1", sb.run("50-services.sh", "--dry-run", env={"IMAGE_TAG": "rollback-1"}).stdout)
        finally:
            sb.cleanup()

    def test_unknown_option_and_missing_config(self):
        result = self.sb.run("up.sh", "--bogus", check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("unknown argument: --bogus", result.stderr)
        result = subprocess.run(["bash", str(DEPLOY / "10-apis.sh"), "--config=/nonexistent/config.env"],
                                capture_output=True, text=True, env=self.sb.env)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("config.env.example", result.stderr)

    def test_help(self):
        result = self.sb.run("up.sh", "--help")
        self.assertIn("Usage: deploy/up.sh", result.stdout)
        self.assertIn("--dry-run", result.stdout)

    def test_the_example_configuration_is_valid(self):
        text = (DEPLOY / "config.env.example").read_text()
        text = text.replace("STARK_PRIVATE_KEY_FILE=./private-key.pem", f"STARK_PRIVATE_KEY_FILE={self.sb.key}")
        text += f"IMAGE_TAG=example\nSTARK_PIPELINE_BIN={self.sb.bin / 'stark-pipeline'}\n"
        self.sb.config.write_text(text)
        plan = self.sb.run("up.sh", "--dry-run").stdout
        self.assertIn("--project=my-stark-pipeline", plan)
        self.assertIn("--region=southamerica-east1", plan)


class Artifacts(unittest.TestCase):
    """The image definitions agree with the workspace and with each other."""

    IMAGES = ["invoice-spammer", "invoice-sender", "webhook-ingester", "money-sender", "stark-pipeline"]

    def test_every_deployable_is_a_binary_of_the_workspace(self):
        for crate in self.IMAGES[:4]:
            manifest = (REPO / "crates" / crate / "Cargo.toml").read_text()
            self.assertIn(f'name = "{crate}"', manifest)
        self.assertIn('name = "stark-pipeline"', (REPO / "Cargo.toml").read_text())

    def test_cloudbuild_builds_and_pushes_every_image(self):
        text = (DEPLOY / "cloudbuild.yaml").read_text()
        self.assertEqual(re.findall(r"--build-arg=BIN=(\S+)", text), self.IMAGES)
        self.assertEqual(re.findall(r"^  - \$\{_REGISTRY\}/(\S+):\$\{_TAG\}$", text, re.M), self.IMAGES)
        lib = (DEPLOY / "lib.sh").read_text()
        self.assertIn('IMAGES="$JOB_SPAMMER $SERVICE_INVOICE_SENDER $SERVICE_WEBHOOK_INGESTER $SERVICE_MONEY_SENDER $CLI_IMAGE"', lib)

    def test_dockerfile_is_multi_stage_cached_and_runs_as_nonroot_on_distroless(self):
        text = (REPO / "docker" / "Dockerfile").read_text()
        self.assertIn("cargo chef cook --release --locked --workspace --bins", text)
        self.assertIn("cargo build --release --locked --workspace --bins", text)
        self.assertIn("FROM gcr.io/distroless/cc-debian12:nonroot AS runtime", text)
        self.assertIn("-slim-bookworm", text)
        self.assertRegex(text, r"\nUSER 65532:65532\n")
        self.assertLess(text.index("cargo chef cook"), text.index("COPY . .\nRUN cargo build"))
        # BIN is used in the last stages only, so that the build layers are shared by all images.
        self.assertLess(text.index("cargo build --release"), text.index("ARG BIN"))

    def test_keys_and_local_config_stay_out_of_builds(self):
        for path in (REPO / ".dockerignore", DEPLOY / "gcloudignore"):
            text = path.read_text()
            for pattern in ("target/", ".git/", "*.pem", "deploy/config.env"):
                self.assertIn(pattern, text, path)


def run_classes(names):
    """Runs the named test classes here; prints unittest's report and the closing line."""
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromName(n, sys.modules[__name__]) for n in names)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    print(f"deploy: {passed} passed, {failed} failed")
    return 1 if failed or not result.testsRun else 0


def main():
    """Without arguments: every test class, in DEPLOY_TEST_JOBS (default 2) parallel processes,
    since each class spends its time spawning fake gcloud processes. With arguments: those
    classes (or Class.test_method), in this process."""
    if len(sys.argv) > 1:
        return run_classes(sys.argv[1:])
    # Slowest first, so that the parallel run ends with the quick ones.
    classes = ["Teardown", "StaticEgress", "FirstDeployThenRedeploy", "AfterDeploy", "DryRun",
               "Configuration", "Artifacts"]
    defined = {name for name, obj in globals().items() if isinstance(obj, type) and issubclass(obj, unittest.TestCase)}
    assert defined == set(classes), f"update the class list in main(): {sorted(defined ^ set(classes))}"
    jobs = max(1, int(os.environ.get("DEPLOY_TEST_JOBS", "2")))
    pending = list(classes)
    running = []
    outputs = {}
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            process = subprocess.Popen([sys.executable, __file__, name], stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            running.append((name, process))
        name, process = running.pop(0)
        outputs[name] = (process.communicate()[0], process.returncode)
    passed = failed = 0
    for name in classes:
        output, code = outputs[name]
        lines = output.rstrip("\n").splitlines()
        closing = re.fullmatch(r"deploy: (\d+) passed, (\d+) failed", lines[-1]) if lines else None
        print("\n".join(lines[:-1] if closing else lines))
        if closing:
            passed += int(closing.group(1))
            failed += int(closing.group(2))
        if code != 0 and not (closing and int(closing.group(2))):
            failed += 1  # the class crashed without reporting a failure
    print(f"deploy: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
