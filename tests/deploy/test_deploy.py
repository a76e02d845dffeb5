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
STEPS = ["10-apis.sh", "20-iam.sh", "30-registry-images.sh", "40-secrets.sh", "45-egress.sh",
         "50-services.sh", "60-pubsub.sh", "70-scheduler.sh", "80-webhook.sh", "90-monitoring.sh"]
WORKSPACE = "6010044957065216"
ALERT_EMAIL = "oncall@example.com"
# The campaign of every sandbox: 24 hourly slots from 2025-01-01T00:00:00Z, reconciled until
# 48 hours after. DEPLOY_NOW stands in for the clock: by default the campaign is running.
DURING_CAMPAIGN = "2025-01-01T06:00:00Z"
SERVICE_ACCOUNTS = ["invoice-spammer", "invoice-sender", "webhook-ingester", "money-sender", "pubsub-push",
                    "spammer-scheduler", "reconciler", "reconciler-scheduler", "image-builder"]
POLICIES = {
    "dead-letters": "stark-pipeline: dead letters waiting",
    "push-backlog": "stark-pipeline: push backlog older than 15 minutes",
    "job-failed": "stark-pipeline: scheduled job failed",
    "log-payout-refused-not-ours": "stark-pipeline: payout refused, invoice not ours",
    "log-payout-rejected": "stark-pipeline: payout rejected by Stark",
    "log-invoice-rejected": "stark-pipeline: invoice rejected by Stark",
    "log-webhook-rejected": "stark-pipeline: webhook rejected",
}
ALERT_EVENTS = ["payout_refused_not_ours", "payout_rejected", "invoice_rejected", "webhook_rejected"]
CHART_EVENTS = ["credited_invoice_published", "transfer_created"]
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
            "STARK_WORKSPACE_ID": WORKSPACE,
            "ALERT_EMAIL": ALERT_EMAIL,
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
            "DEPLOY_NOW": DURING_CAMPAIGN,
        })
        for variable in ("DEPLOY_CONFIG", "FAKE_PROVISION_BROKEN", "FAKE_SUBNET_IN_USE", "GOOGLE_APPLICATION_CREDENTIALS"):
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


VERBS = {"describe", "create", "delete", "deploy", "update", "add-iam-policy-binding", "get-iam-policy",
         "enable", "submit", "access", "add", "pause", "resume", "list", "remove-iam-policy-binding"}


def verb_of(argv):
    return next((p for p in positionals(argv) if p in VERBS), None)


def words_of(argv):
    """The positional words of a gcloud call without the alpha/beta release track."""
    words = positionals(argv)
    return words[1:] if words[:1] in (["alpha"], ["beta"]) else words


def policy_json(name):
    return json.loads((DEPLOY / "monitoring" / "policies" / f"{name}.json").read_text())


def dashboard_json():
    return json.loads((DEPLOY / "monitoring" / "dashboard.json").read_text())


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

    def reconciler(self):
        return one(self.first, "run", "jobs", "deploy", "reconciler")

    def test_first_run_creates_every_resource(self):
        created = set()
        for call in find(self.first):
            if verb_of(call) != "create":
                continue
            words = words_of(call)
            group = " ".join(words[:words.index("create")])
            rest = words[words.index("create") + 1:]
            f = flags(call)
            what = rest[-1] if rest else f.get("display-name") or f.get("policy-from-file") or f.get("config-from-file")
            created.add((group, what))
        self.assertEqual(created, {
            ("artifacts repositories", "stark-pipeline"),
            ("storage buckets", f"gs://{PROJECT}_cloudbuild"),
            *(("iam service-accounts", n) for n in SERVICE_ACCOUNTS),
            ("secrets", SECRET),
            ("scheduler jobs", "invoice-spammer-hourly"),
            ("scheduler jobs", "reconciler-every-15-minutes"),
            ("monitoring channels", "stark-pipeline alerts"),
            *(("logging metrics", f"stark_pipeline_{e}") for e in ALERT_EVENTS + CHART_EVENTS),
            *(("monitoring policies", f"deploy/monitoring/policies/{n}.json") for n in POLICIES),
            ("monitoring dashboards", "deploy/monitoring/dashboard.json"),
        })
        self.assertEqual(len(find(self.first, "builds", "submit")), 1)
        self.assertEqual(len(find(self.first, "secrets", "versions", "add")), 1)
        self.assertEqual([positionals(c)[3] for c in find(self.first, "run", "jobs", "deploy")],
                         ["invoice-spammer", "reconciler"])

    def test_every_create_is_preceded_by_a_describe_or_list_of_the_same_resource(self):
        calls = gcloud_calls(self.first)
        for i, call in enumerate(calls):
            if verb_of(call) != "create":
                continue
            words = words_of(call)
            group = words[:words.index("create")]
            rest = words[words.index("create") + 1:]
            if rest:
                name = rest[-1]
                found = [c for c in calls[:i] if verb_of(c) == "describe" and words_of(c)[:len(group)] == group
                         and (words_of(c)[-1] == name or words_of(c)[-1].startswith(name + "@"))]
            else:
                # Named by Google: looked up by display name first.
                found = [c for c in calls[:i] if verb_of(c) == "list" and words_of(c)[:len(group)] == group
                         and "displayName=" in flags(c).get("filter", "")]
            self.assertTrue(found, f"no describe or list before {shlex.join(call)}")

    def test_second_run_creates_nothing(self):
        writes = [shlex.join(c) for c in gcloud_calls(self.second) if verb_of(c) in WRITES]
        self.assertEqual(writes, [], "the second run wrote:\n" + "\n".join(writes))
        self.assertEqual(self.sb.state()["resources"], self.state_after_first["resources"])
        self.assertEqual(self.sb.state()["iam"], self.state_after_first["iam"])

    def test_second_run_only_reads_deploys_and_updates(self):
        verbs = {verb_of(c) for c in gcloud_calls(self.second)}
        self.assertLessEqual(verbs, {"describe", "get-iam-policy", "access", "enable", "deploy", "update", "list"})
        self.assertEqual([positionals(c)[:5] for c in find(self.second, "scheduler", "jobs", "update")],
                         [["scheduler", "jobs", "update", "http", "invoice-spammer-hourly"],
                          ["scheduler", "jobs", "update", "http", "reconciler-every-15-minutes"]])

    def test_private_services_require_authentication_and_the_ingester_is_public(self):
        for service in ("invoice-sender", "money-sender"):
            f = flags(self.deploy_of(service))
            self.assertIn("no-allow-unauthenticated", f, service)
            self.assertNotIn("allow-unauthenticated", f, service)
            self.assertNotIn("no-invoker-iam-check", f, service)
            self.assertEqual(f["ingress"], "internal", service)
        f = flags(self.deploy_of("webhook-ingester"))
        self.assertIn("allow-unauthenticated", f)
        self.assertNotIn("no-allow-unauthenticated", f)
        self.assertNotIn("no-invoker-iam-check", f)
        self.assertEqual(f["ingress"], "all")

    def test_only_the_push_identity_may_invoke_the_private_services(self):
        for service in ("invoice-sender", "money-sender"):
            self.assertEqual(self.sb.bindings("run services", service, REGION),
                             [("roles/run.invoker", sa("pubsub-push"))])

    def test_each_deployable_runs_as_its_own_service_account(self):
        for service in SERVICES:
            self.assertEqual(flags(self.deploy_of(service))["service-account"], email(service))
        job = one(self.first, "run", "jobs", "deploy", "invoice-spammer")
        self.assertEqual(flags(job)["service-account"], email("invoice-spammer"))
        self.assertEqual(flags(self.reconciler())["service-account"], email("reconciler"))

    def test_images_come_from_the_registry_with_the_configured_tag(self):
        registry = f"{REGION}-docker.pkg.dev/{PROJECT}/stark-pipeline"
        for service in SERVICES:
            self.assertEqual(flags(self.deploy_of(service))["image"], f"{registry}/{service}:0123456789ab")
        self.assertEqual(flags(self.reconciler())["image"], f"{registry}/stark-pipeline:0123456789ab")
        build = flags(one(self.first, "builds", "submit"))
        self.assertEqual(build["config"], "deploy/cloudbuild.yaml")
        self.assertEqual(build["substitutions"], f"_REGISTRY={registry},_TAG=0123456789ab")

    def test_cloud_build_runs_as_its_own_account_with_the_roles_it_needs(self):
        build = flags(one(self.first, "builds", "submit"))
        self.assertEqual(build["service-account"], f"projects/{PROJECT}/serviceAccounts/{email('image-builder')}")
        self.assertEqual(build["gcs-source-staging-dir"], f"gs://{PROJECT}_cloudbuild/source")
        self.assertEqual(self.sb.bindings("artifacts repositories", "stark-pipeline", REGION),
                         [("roles/artifactregistry.writer", sa("image-builder"))])
        self.assertEqual(self.sb.bindings("storage buckets", f"gs://{PROJECT}_cloudbuild"),
                         [("roles/storage.objectViewer", sa("image-builder"))])
        self.assertEqual(self.sb.bindings("projects", PROJECT), [("roles/logging.logWriter", sa("image-builder"))])
        # The account and its grants exist before the build runs.
        calls = gcloud_calls(self.first)
        submit = next(i for i, c in enumerate(calls) if verb_of(c) == "submit")
        for i, c in enumerate(calls):
            if verb_of(c) == "add-iam-policy-binding" and flags(c)["member"] == sa("image-builder"):
                self.assertLess(i, submit, shlex.join(c))
        # A build with its own service account must say where its logs go.
        self.assertRegex((DEPLOY / "cloudbuild.yaml").read_text(), r"\n  logging: CLOUD_LOGGING_ONLY\n")

    def test_the_reconciler_reads_the_campaign_exactly_as_the_spammer(self):
        spammer = env_vars(one(self.first, "run", "jobs", "deploy", "invoice-spammer"))
        reconciler = env_vars(self.reconciler())
        campaign = {k: v for k, v in spammer.items() if k.startswith(("CAMPAIGN_", "INVOICE_"))}
        self.assertIn("CAMPAIGN_START", campaign)
        self.assertIn("INVOICE_AMOUNT_MIN_CENTS", campaign)
        self.assertEqual({k: v for k, v in reconciler.items() if k in campaign}, campaign)

    def test_stark_key_is_mounted_by_version_in_the_signing_services_and_the_reconciler_only(self):
        for argv in [self.deploy_of(s) for s in SERVICES] + [self.reconciler()]:
            self.assertEqual(flags(argv)["set-secrets"], f"{KEY_MOUNT}={SECRET}:1", positionals(argv))
            self.assertEqual(env_vars(argv)["STARK_PRIVATE_KEY_FILE"], KEY_MOUNT)
            self.assertEqual(env_vars(argv)["STARK_ACCESS_ID"], "project/5656565656565656")
            self.assertEqual(env_vars(argv)["STARK_WORKSPACE_ID"], WORKSPACE)
        job = one(self.first, "run", "jobs", "deploy", "invoice-spammer")
        self.assertNotIn("set-secrets", flags(job))
        self.assertFalse([k for k in env_vars(job) if k.startswith("STARK_")])
        self.assertNotIn(":latest", self.sb.log.read_text())

    def test_key_is_uploaded_by_path_and_never_appears_on_a_command_line(self):
        add = flags(one(self.first, "secrets", "versions", "add"))
        self.assertEqual(add["data-file"], str(self.sb.key))
        log = self.sb.log.read_text()
        self.assertNotIn("MHQCAQEEIFAKEFAKEFAKE", log)
        self.assertNotIn("MHQCAQEEIFAKEFAKEFAKE", self.first_run.stdout + self.first_run.stderr)

    def test_secret_is_readable_by_the_signing_services_and_the_reconciler_only(self):
        self.assertEqual(self.sb.bindings("secrets", SECRET), sorted(
            ("roles/secretmanager.secretAccessor", sa(n))
            for n in ["invoice-sender", "webhook-ingester", "money-sender", "reconciler"]))

    def test_pubsub_roles_are_granted_per_topic_and_subscription(self):
        self.assertEqual(self.sb.bindings("pubsub topics", "pending_invoices"),
                         sorted([("roles/pubsub.publisher", sa("invoice-spammer")),
                                 ("roles/pubsub.publisher", sa("reconciler"))]))
        self.assertEqual(self.sb.bindings("pubsub topics", "paid_invoices"),
                         sorted([("roles/pubsub.publisher", sa("webhook-ingester")),
                                 ("roles/pubsub.publisher", sa("reconciler"))]))
        for topic in ("pending_invoices-dead-letter", "paid_invoices-dead-letter"):
            self.assertEqual(self.sb.bindings("pubsub topics", topic), [("roles/pubsub.publisher", AGENT)])
            # The reconciler drains the dead letters whose cause is gone.
            self.assertEqual(self.sb.bindings("pubsub subscriptions", topic),
                             [("roles/pubsub.subscriber", sa("reconciler"))])
        for subscription in ("pending_invoices-invoice-sender", "paid_invoices-money-sender"):
            self.assertEqual(self.sb.bindings("pubsub subscriptions", subscription), [("roles/pubsub.subscriber", AGENT)])
        self.assertEqual(self.sb.bindings("iam service-accounts", email("pubsub-push")),
                         [("roles/iam.serviceAccountTokenCreator", AGENT)])

    def test_only_cloud_build_s_log_writer_is_granted_at_project_level(self):
        project_grants = [c for c in find(self.first, "projects", "add-iam-policy-binding")]
        self.assertEqual([(flags(c)["role"], flags(c)["member"]) for c in project_grants],
                         [("roles/logging.logWriter", sa("image-builder"))])
        granted = {positionals(c)[0] + " " + positionals(c)[1] for c in gcloud_calls(self.first)
                   if verb_of(c) == "add-iam-policy-binding"}
        self.assertEqual(granted, {"iam service-accounts", "secrets add-iam-policy-binding", "run services",
                                   "pubsub topics", "pubsub subscriptions", "run jobs", "projects add-iam-policy-binding",
                                   "artifacts repositories", "storage buckets"})

    def test_provision_gets_oidc_identity_audiences_and_retries_for_hours(self):
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
            "max-delivery-attempts": "100",
            "min-backoff-seconds": "10",
            "max-backoff-seconds": "600",
        })

    def test_subscriptions_are_read_back_for_delivery_dead_letter_and_retention(self):
        checked = {}
        for call in find(self.first, "pubsub", "subscriptions", "describe"):
            checked[positionals(call)[-1]] = flags(call)["format"]
        for subscription in ("pending_invoices-invoice-sender", "paid_invoices-money-sender"):
            for field in ("deadLetterPolicy.deadLetterTopic", "deadLetterPolicy.maxDeliveryAttempts",
                          "messageRetentionDuration", "retainAckedMessages", "ackDeadlineSeconds",
                          "retryPolicy.minimumBackoff", "retryPolicy.maximumBackoff",
                          "pushConfig.oidcToken.serviceAccountEmail", "pushConfig.oidcToken.audience"):
                self.assertIn(field, checked[subscription])
        for subscription in ("pending_invoices-dead-letter", "paid_invoices-dead-letter"):
            self.assertIn("messageRetentionDuration", checked[subscription])
            self.assertIn("retainAckedMessages", checked[subscription])
            self.assertEqual(self.sb.resource("pubsub subscriptions", subscription)["messageRetentionDuration"], "2678400s")
        sub = self.sb.resource("pubsub subscriptions", "paid_invoices-money-sender")
        self.assertEqual(sub["deadLetterPolicy"]["deadLetterTopic"], f"projects/{PROJECT}/topics/paid_invoices-dead-letter")
        self.assertEqual(sub["deadLetterPolicy"]["maxDeliveryAttempts"], 100)
        self.assertEqual(sub["messageRetentionDuration"], "604800s")

    def test_scheduler_runs_the_job_every_hour_as_the_scheduler_identity(self):
        create = one(self.first, "scheduler", "jobs", "create", "http", "invoice-spammer-hourly")
        f = flags(create)
        self.assertEqual(f["schedule"], "0 * * * *")
        self.assertEqual(f["location"], REGION)
        self.assertEqual(f["uri"], f"https://run.googleapis.com/v2/projects/{PROJECT}/locations/{REGION}/jobs/invoice-spammer:run")
        self.assertEqual(f["http-method"], "POST")
        self.assertEqual(f["oauth-service-account-email"], email("spammer-scheduler"))
        self.assertEqual(f["oauth-token-scope"], "https://www.googleapis.com/auth/cloud-platform")
        self.assertEqual(self.sb.bindings("run jobs", "invoice-spammer", REGION),
                         [("roles/run.invoker", sa("spammer-scheduler"))])

    def test_reconciler_runs_every_15_minutes_with_repair_since_the_campaign_start(self):
        f = flags(self.reconciler())
        self.assertEqual(f["args"], "reconcile,--repair,--since=2025-01-01T00:00:00Z")
        self.assertEqual((f["tasks"], f["max-retries"]), ("1", "0"))
        self.assertIn("clear-network", f)
        env = env_vars(self.reconciler())
        self.assertEqual(env["PUBSUB_PROJECT_ID"], PROJECT)
        self.assertEqual(env["PAYOUT_NAME"], "Stark Bank, S.A.")  # reconcile checks the receiver
        money = env_vars(self.deploy_of("money-sender"))
        # money-sender's Stark and payout settings, plus Pub/Sub and the campaign.
        own = ("PUBSUB_PROJECT_ID", "CAMPAIGN_", "INVOICE_")
        self.assertEqual({k: v for k, v in env.items() if not k.startswith(own)}, money)
        create = flags(one(self.first, "scheduler", "jobs", "create", "http", "reconciler-every-15-minutes"))
        self.assertEqual(create["schedule"], "*/15 * * * *")
        self.assertEqual(create["uri"], f"https://run.googleapis.com/v2/projects/{PROJECT}/locations/{REGION}/jobs/reconciler:run")
        self.assertEqual(create["oauth-service-account-email"], email("reconciler-scheduler"))
        self.assertEqual(self.sb.bindings("run jobs", "reconciler", REGION),
                         [("roles/run.invoker", sa("reconciler-scheduler"))])
        # The campaign is running: both scheduler jobs stay enabled.
        self.assertEqual(find(self.first, "scheduler", "jobs", "pause"), [])
        for job in ("invoice-spammer-hourly", "reconciler-every-15-minutes"):
            self.assertEqual(self.sb.resource("scheduler jobs", job, REGION)["state"], "ENABLED")

    def test_job_carries_the_campaign_window_and_retries(self):
        job = one(self.first, "run", "jobs", "deploy", "invoice-spammer")
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
            f = flags(self.deploy_of(service))
            env = env_vars(self.deploy_of(service))
            self.assertEqual(env["LOG_FORMAT"], "json")
            self.assertEqual(env["GOOGLE_CLOUD_PROJECT"], PROJECT)
            self.assertNotIn("PORT", env, "Cloud Run sets PORT itself")
            self.assertEqual(f["startup-probe"],
                             "httpGet.path=/readyz,periodSeconds=5,timeoutSeconds=4,failureThreshold=44", service)
            self.assertEqual(f["timeout"], "50s", service)
            self.assertIn("clear-network", f)
        self.assertEqual(flags(self.deploy_of("webhook-ingester"))["min-instances"], "0")

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

    def test_monitoring_alerts_the_configured_address_and_charts_the_pipeline(self):
        channels = [v for k, v in self.sb.state()["resources"].items() if k.startswith("monitoring channels||")]
        self.assertEqual(len(channels), 1)
        self.assertEqual((channels[0]["displayName"], channels[0]["type"], channels[0]["labels"]),
                         ("stark-pipeline alerts", "email", {"email_address": ALERT_EMAIL}))
        policies = {v["displayName"]: v for k, v in self.sb.state()["resources"].items()
                    if k.startswith("monitoring policies||")}
        self.assertEqual(set(policies), set(POLICIES.values()))
        for file, display in POLICIES.items():
            self.assertEqual(policies[display]["policy"], policy_json(file))
            self.assertEqual(policies[display]["notificationChannels"], [channels[0]["name"]])
        for event in ALERT_EVENTS + CHART_EVENTS:
            metric = self.sb.resource("logging metrics", f"stark_pipeline_{event}")
            self.assertEqual(metric["log-filter"], f'resource.type="cloud_run_revision" AND jsonPayload.event="{event}"')
        dashboards = [v for k, v in self.sb.state()["resources"].items() if k.startswith("monitoring dashboards||")]
        self.assertEqual([d["dashboard"] for d in dashboards], [dashboard_json()])
        self.assertIn("monitoring.googleapis.com", one(self.first, "services", "enable", "monitoring.googleapis.com"))
        # The second run found each by its display name and updated it in place.
        updated = [words_of(c)[3] for c in find(self.second, "alpha", "monitoring", "policies", "update")]
        self.assertEqual(sorted(updated), sorted(v["name"] for v in policies.values()))
        self.assertEqual(len(find(self.second, "monitoring", "dashboards", "update")), 1)

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
                        f"{SECRET}:1": f"{SECRET}:<key-version>"}
        channel = next(v["name"] for k, v in self.sb.state()["resources"].items() if k.startswith("monitoring channels||"))
        replacements[channel] = "<notification-channel>"
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

    def test_summary_names_the_urls_the_windows_and_the_alert_address(self):
        self.assertIn(f"{self.url('webhook-ingester')}/webhook", self.first_run.stderr)
        self.assertIn("from 2025-01-01T00:00:00Z to 2025-01-02T00:00:00Z", self.first_run.stderr)
        self.assertIn("every 15 minutes until 2025-01-04T00:00:00Z", self.first_run.stderr)
        self.assertIn(ALERT_EMAIL, self.first_run.stderr)


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

    def test_up_dry_run_shows_retries_alerts_dashboard_reconciler_and_the_pinned_key(self):
        plan = self.sb.run("up.sh", "--dry-run").stdout
        self.assertEqual(self.sb.calls(), [])
        commands = self.plan_commands(plan)
        # 100 delivery attempts, backoff 10 s to 600 s.
        provision = [c for c in commands if c[0].endswith("stark-pipeline") and c[1:2] == ["provision"]]
        self.assertEqual(len(provision), 1)
        self.assertEqual({k: flags(provision[0])[k] for k in ("max-delivery-attempts", "min-backoff-seconds", "max-backoff-seconds")},
                         {"max-delivery-attempts": "100", "min-backoff-seconds": "10", "max-backoff-seconds": "600"})
        self.assertIn("expected topic,pushConfig.pushEndpoint", plan)
        self.assertRegex(plan, r"# expected .*maxDeliveryAttempts.* = .*\|100\|604800s\|true\n")
        self.assertRegex(plan, r"# expected topic,messageRetentionDuration,retainAckedMessages = .*-dead-letter\|2678400s\|true\n")
        # Every alert policy, created with the notification channel, and the dashboard.
        creates = [c for c in commands if c[:5] == ["gcloud", "alpha", "monitoring", "policies", "create"]]
        self.assertEqual(sorted(flags(c)["policy-from-file"] for c in creates),
                         sorted(f"deploy/monitoring/policies/{n}.json" for n in POLICIES))
        for c in creates:
            self.assertEqual(flags(c)["notification-channels"], "<notification-channel>")
        for display in POLICIES.values():
            self.assertIn(f"--filter=displayName=\"{display}\"", plan)
        channel = [c for c in commands if c[:5] == ["gcloud", "beta", "monitoring", "channels", "create"]]
        self.assertEqual(flags(channel[0])["channel-labels"], f"email_address={ALERT_EMAIL}")
        self.assertIn("gcloud monitoring dashboards create --project=acme-stark-1 --config-from-file=deploy/monitoring/dashboard.json", plan)
        for event in ALERT_EVENTS + CHART_EVENTS:
            self.assertIn(f"gcloud logging metrics create stark_pipeline_{event} ", plan)
        # The reconciler: a Cloud Run job of the CLI image, started every 15 minutes.
        job = [c for c in commands if c[:5] == ["gcloud", "run", "jobs", "deploy", "reconciler"]]
        self.assertEqual(len(job), 1)
        self.assertEqual(flags(job[0])["args"], "reconcile,--repair,--since=2025-01-01T00:00:00Z")
        self.assertTrue(flags(job[0])["image"].endswith("/stark-pipeline:0123456789ab"))
        scheduler = [c for c in commands if c[:6] == ["gcloud", "scheduler", "jobs", "create", "http", "reconciler-every-15-minutes"]]
        self.assertEqual(flags(scheduler[0])["schedule"], "*/15 * * * *")
        self.assertTrue(flags(scheduler[0])["uri"].endswith("/jobs/reconciler:run"))
        # The key mounted by version, never :latest.
        mounts = [flags(c)["set-secrets"] for c in commands if "set-secrets" in flags(c)]
        self.assertEqual(mounts, [f"{KEY_MOUNT}={SECRET}:<key-version>"] * 4)
        self.assertNotIn(f"{SECRET}:latest", plan)

    def test_teardown_dry_run_needs_no_confirmation_and_prints_the_deletes(self):
        plan = self.sb.run("teardown.sh", "--dry-run").stdout
        self.assertEqual(self.sb.calls(), [])
        for needle in ("gcloud scheduler jobs delete invoice-spammer-hourly", "gcloud run services delete webhook-ingester",
                       "gcloud scheduler jobs delete reconciler-every-15-minutes", "gcloud run jobs delete reconciler",
                       "gcloud pubsub topics delete paid_invoices-dead-letter", f"gcloud secrets delete {SECRET}",
                       "gcloud iam service-accounts delete pubsub-push@", "gcloud artifacts repositories delete",
                       "gcloud alpha monitoring policies delete", "gcloud monitoring dashboards delete",
                       "gcloud beta monitoring channels delete", "gcloud logging metrics delete stark_pipeline_payout_rejected"):
            self.assertIn(needle, plan)
        # Network resources come last.
        self.assertGreater(plan.index("gcloud compute networks delete"), plan.index("gcloud artifacts repositories delete"))

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
        self.assertIn("compute.googleapis.com", one(self.first, "services", "enable", "run.googleapis.com"))

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

    def test_the_reconciler_leaves_through_the_nat_too(self):
        f = flags(one(self.first, "run", "jobs", "deploy", "reconciler"))
        self.assertEqual((f["network"], f["subnet"], f["vpc-egress"]),
                         ("stark-pipeline", "stark-pipeline-egress", "all-traffic"))
        f = flags(one(self.first, "run", "jobs", "deploy", "invoice-spammer"))
        self.assertNotIn("network", f)

    def test_the_ingester_keeps_one_instance_warm(self):
        # Direct VPC egress through Cloud NAT can delay a new instance's first connection by a minute or more.
        self.assertEqual(flags(one(self.first, "run", "deploy", "webhook-ingester"))["min-instances"], "1")
        for service in ("invoice-sender", "money-sender"):
            self.assertEqual(flags(one(self.first, "run", "deploy", service))["min-instances"], "0")

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
            # Cloud Build's staging bucket stays (documented); nothing else does.
            self.assertEqual(left, [f"storage buckets||gs://{PROJECT}_cloudbuild"])
            self.assertEqual(sb.state()["iam"], {})
            deleted = [c for c in gcloud_calls(sb.calls()[before:]) if verb_of(c) == "delete"]
            self.assertTrue(all("quiet" in flags(c) for c in deleted))
            # Monitoring first, so that tearing down raises no alert; the network last.
            kinds = [" ".join(words_of(c)[:2]) for c in deleted]
            self.assertEqual(kinds[0], "monitoring policies")
            self.assertEqual(kinds[-1], "compute networks")
            middle = len(sb.calls())
            sb.run("teardown.sh", "--yes")
            again = [shlex.join(c) for c in gcloud_calls(sb.calls()[middle:])
                     if verb_of(c) in WRITES | {"remove-iam-policy-binding"}]
            self.assertEqual(again, [])
        finally:
            sb.cleanup()

    def test_a_subnet_still_in_use_is_left_for_a_later_run_after_everything_else(self):
        sb = Sandbox(STATIC_EGRESS="true")
        try:
            sb.run("up.sh")
            result = sb.run("teardown.sh", "--yes", check=False, env={"FAKE_SUBNET_IN_USE": "1"})
            self.assertEqual(result.returncode, 75, result.stderr)
            self.assertIn("still in use", result.stderr)
            self.assertIn("run deploy/teardown.sh again later", result.stderr)
            left = sorted(k for k in sb.state()["resources"] if not k.startswith("services||"))
            self.assertEqual(left, sorted([f"compute networks||stark-pipeline",
                                           f"compute networks subnets|{REGION}|stark-pipeline-egress",
                                           f"storage buckets||gs://{PROJECT}_cloudbuild"]))
            self.assertEqual(find(sb.calls(), "compute", "networks", "delete"), [])
            # Later, once Cloud Run has released it:
            sb.run("teardown.sh", "--yes")
            left = sorted(k for k in sb.state()["resources"] if not k.startswith("services||"))
            self.assertEqual(left, [f"storage buckets||gs://{PROJECT}_cloudbuild"])
        finally:
            sb.cleanup()

    def test_keeps_images_and_a_network_it_did_not_make(self):
        sb = Sandbox(STATIC_EGRESS="true", EGRESS_NETWORK="default")
        try:
            sb.state_file.write_text(json.dumps({"resources": {
                "compute networks||default": {"description": "Default network for the project"}}, "iam": {}, "webhooks": []}))
            sb.run("30-registry-images.sh")
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
            # The services read the key at start: the new version must roll out new revisions,
            # each mounting version 2 by number (a rollback to an older revision keeps version 1).
            count = len(sb.calls())
            sb.run("50-services.sh")
            sb.run("70-scheduler.sh")
            for service in SERVICES:
                self.assertEqual(flags(one(sb.calls()[count:], "run", "deploy", service))["set-secrets"], f"{KEY_MOUNT}={SECRET}:2")
            self.assertEqual(flags(one(sb.calls()[count:], "run", "jobs", "deploy", "reconciler"))["set-secrets"],
                             f"{KEY_MOUNT}={SECRET}:2")
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

    def test_dead_letters_kept_7_days_instead_of_31_fails(self):
        self.check_broken("dead-letter-retention", "2678400s")

    def test_other_backoff_fails(self):
        self.check_broken("backoff", "retryPolicy.maximumBackoff")

    def test_correct_topology_passes(self):
        self.sb.run("60-pubsub.sh")


class CampaignWindow(unittest.TestCase):
    """Cloud Scheduler has no end date: 70-scheduler.sh (up.sh) pauses each job once its window is over."""

    def deploy_at(self, now):
        sb = Sandbox()
        self.addCleanup(sb.cleanup)
        sb.run("up.sh", env={"DEPLOY_NOW": DURING_CAMPAIGN})
        count = len(sb.calls())
        result = sb.run("70-scheduler.sh", env={"DEPLOY_NOW": now})
        return sb, sb.calls()[count:], result

    def state(self, sb, job):
        return sb.resource("scheduler jobs", job, REGION)["state"]

    def test_spammer_paused_after_the_campaign_reconciler_still_running(self):
        sb, calls, result = self.deploy_at("2025-01-02T00:00:00Z")  # the campaign's end, exactly
        self.assertEqual([positionals(c)[3] for c in find(calls, "scheduler", "jobs", "pause")], ["invoice-spammer-hourly"])
        self.assertIn("campaign campaign-test (24 hourly slots from 2025-01-01T00:00:00Z) ended at 2025-01-02T00:00:00Z, "
                      "but scheduler job invoice-spammer-hourly is still enabled: pausing it", result.stderr)
        self.assertEqual(self.state(sb, "invoice-spammer-hourly"), "PAUSED")
        self.assertEqual(self.state(sb, "reconciler-every-15-minutes"), "ENABLED")

    def test_both_paused_48_hours_after_the_campaign_and_only_once(self):
        sb, calls, result = self.deploy_at("2025-01-04T00:00:00Z")
        self.assertEqual(sorted(positionals(c)[3] for c in find(calls, "scheduler", "jobs", "pause")),
                         ["invoice-spammer-hourly", "reconciler-every-15-minutes"])
        self.assertIn("warning: the reconciliation of campaign campaign-test (48 h after its end) ended at "
                      "2025-01-04T00:00:00Z, but scheduler job reconciler-every-15-minutes is still enabled", result.stderr)
        count = len(sb.calls())
        result = sb.run("up.sh", env={"DEPLOY_NOW": "2025-02-01T00:00:00Z"})
        self.assertEqual(find(sb.calls()[count:], "scheduler", "jobs", "pause"), [])
        self.assertNotIn("still enabled", result.stderr)
        self.assertEqual((self.state(sb, "invoice-spammer-hourly"), self.state(sb, "reconciler-every-15-minutes")),
                         ("PAUSED", "PAUSED"))

    def test_a_paused_campaign_is_never_resumed(self):
        sb = Sandbox()
        self.addCleanup(sb.cleanup)
        sb.run("up.sh")
        state = sb.state()
        state["resources"][f"scheduler jobs|{REGION}|invoice-spammer-hourly"]["state"] = "PAUSED"
        sb.state_file.write_text(json.dumps(state))
        result = sb.run("up.sh")
        self.assertIn("invoice-spammer-hourly is PAUSED (left as it was)", result.stderr)
        self.assertEqual(self.state(sb, "invoice-spammer-hourly"), "PAUSED")
        self.assertEqual(find(sb.calls(), "scheduler", "jobs", "resume"), [])

    def test_windows_follow_the_configuration_and_offsets(self):
        sb = Sandbox(CAMPAIGN_START="2025-03-01T21:00:00-03:00", CAMPAIGN_HOURS="3", RECONCILE_HOURS_AFTER="1")
        self.addCleanup(sb.cleanup)
        plan = sb.run("70-scheduler.sh", "--dry-run", env={"DEPLOY_NOW": "2025-03-02T03:30:00Z"}).stdout
        # Ends: 00:00Z + 3 h = 03:00Z (over), reconciler 04:00Z (not yet).
        self.assertIn("gcloud scheduler jobs pause invoice-spammer-hourly --location=southamerica-east1 "
                      "--project=acme-stark-1   # only if ENABLED: campaign campaign-test (3 hourly slots from "
                      "2025-03-01T21:00:00-03:00) ended at 2025-03-02T03:00:00Z", plan)
        self.assertNotIn("gcloud scheduler jobs pause reconciler", plan)
        self.assertIn("ends at 2025-03-02T04:00:00Z", plan)
        self.assertIn("--args=reconcile,--repair,--since=2025-03-01T21:00:00-03:00", plan)

    def test_dates_across_years_and_leap_days(self):
        for start, hours, end in (("2024-02-28T12:00:00Z", "24", "2024-02-29T12:00:00Z"),
                                  ("2024-12-31T23:00:00Z", "2", "2025-01-01T01:00:00Z"),
                                  ("2100-02-28T00:00:00+01:00", "48", "2100-03-01T23:00:00Z")):
            sb = Sandbox(CAMPAIGN_START=start, CAMPAIGN_HOURS=hours, RECONCILE_HOURS_AFTER="0")
            try:
                plan = sb.run("70-scheduler.sh", "--dry-run", env={"DEPLOY_NOW": "2000-01-01T00:00:00Z"}).stdout
            finally:
                sb.cleanup()
            self.assertIn(f"ends at {end};", plan, start)


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
        self.rejects("STARK_WORKSPACE_ID is not set", STARK_WORKSPACE_ID="")
        self.rejects("STARK_WORKSPACE_ID=ws-1 is invalid", STARK_WORKSPACE_ID="ws-1")
        self.rejects("ALERT_EMAIL is not set", ALERT_EMAIL="")
        self.rejects("ALERT_EMAIL=oncall is invalid", ALERT_EMAIL="oncall")
        self.rejects("MIN_BACKOFF_SECONDS=700 / MAX_BACKOFF_SECONDS=800 is invalid: Pub/Sub accepts 0 to 600 s",
                     MIN_BACKOFF_SECONDS="700", MAX_BACKOFF_SECONDS="800")
        self.rejects("MIN_BACKOFF_SECONDS (60) exceeds MAX_BACKOFF_SECONDS (30)", MIN_BACKOFF_SECONDS="60", MAX_BACKOFF_SECONDS="30")
        self.rejects("INGESTER_INVOKER_IAM_CHECK=no is invalid", INGESTER_INVOKER_IAM_CHECK="no")
        self.rejects("RECONCILE_HOURS_AFTER=two is invalid", RECONCILE_HOURS_AFTER="two")
        self.rejects("INGESTER_MIN_INSTANCES=0 is invalid with STATIC_EGRESS=true", STATIC_EGRESS="true",
                     INGESTER_MIN_INSTANCES="0")

    def test_a_push_must_be_answered_within_the_ack_deadline(self):
        # The request timeout must stay below the subscriptions' 60 s ack deadline...
        self.rejects("SERVICE_TIMEOUT=60s is invalid: a push must be answered within the subscriptions' 60 s ack deadline",
                     SERVICE_TIMEOUT="60s")
        self.rejects("SERVICE_TIMEOUT=5m is invalid", SERVICE_TIMEOUT="5m")
        self.rejects("SERVICE_TIMEOUT=fast is invalid", SERVICE_TIMEOUT="fast")
        # ...and the Stark calls of one push (4 x STARK_TIMEOUT_SECONDS + 1 s of backoff) must fit in it.
        self.rejects("STARK_TIMEOUT_SECONDS=15 and SERVICE_TIMEOUT=50s do not fit the 60 s ack deadline",
                     STARK_TIMEOUT_SECONDS="15")
        self.rejects("at most 9.7 with this SERVICE_TIMEOUT", STARK_TIMEOUT_SECONDS="12", SERVICE_TIMEOUT="40s")
        self.rejects("STARK_TIMEOUT_SECONDS=ten is invalid", STARK_TIMEOUT_SECONDS="ten")
        for ok in ({"STARK_TIMEOUT_SECONDS": "12", "SERVICE_TIMEOUT": "55s"}, {"STARK_TIMEOUT_SECONDS": "2.5", "SERVICE_TIMEOUT": "12"},
                   {"SERVICE_TIMEOUT": "59s"}):
            sb = Sandbox(**ok)
            try:
                sb.run("50-services.sh", "--dry-run")
            finally:
                sb.cleanup()

    def test_the_ingester_can_be_public_without_an_allusers_binding(self):
        sb = Sandbox(INGESTER_INVOKER_IAM_CHECK="false")
        try:
            plan = sb.run("50-services.sh", "--dry-run").stdout
        finally:
            sb.cleanup()
        deploys = {shlex.split(line)[3]: flags(shlex.split(line, comments=True)) for line in plan.splitlines()
                   if line.startswith("gcloud run deploy ")}
        self.assertIn("no-invoker-iam-check", deploys["webhook-ingester"])
        self.assertNotIn("allow-unauthenticated", deploys["webhook-ingester"])
        for service in ("invoice-sender", "money-sender"):
            self.assertIn("no-allow-unauthenticated", deploys[service])
            self.assertNotIn("no-invoker-iam-check", deploys[service])

    def test_the_environment_cannot_slip_values_into_the_deploy(self):
        leftovers = {"PAYOUT_ACCOUNT_NUMBER": "999", "RUST_LOG": "trace", "STATIC_EGRESS": "true",
                     "REGION": "us-central1", "STARK_WORKSPACE_ID": "4242", "ALERT_EMAIL": "intruder@example.org",
                     "MAX_DELIVERY_ATTEMPTS": "7"}
        plan = self.sb.run("50-services.sh", "--dry-run", env=leftovers).stdout
        for value in ("999", "trace", "us-central1", "4242", "--vpc-egress"):
            self.assertNotIn(value, plan)
        plan = self.sb.run("up.sh", "--dry-run", env=leftovers).stdout
        self.assertNotIn("intruder@example.org", plan)
        self.assertIn("--max-delivery-attempts=100", plan)
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
        text = text.replace("STARK_PRIVATE_KEY_FILE=./keys/private-key.pem", f"STARK_PRIVATE_KEY_FILE={self.sb.key}")
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

    def test_alert_policies_watch_what_the_issue_asks_for(self):
        self.assertEqual(sorted(p.stem for p in (DEPLOY / "monitoring" / "policies").glob("*.json")), sorted(POLICIES))
        for name, display in POLICIES.items():
            policy = policy_json(name)
            self.assertEqual(policy["displayName"], display)
            self.assertEqual(policy["userLabels"], {"app": "stark-pipeline"})
            self.assertIn("What to do", policy["documentation"]["content"], name)
            self.assertEqual(policy["documentation"]["mimeType"], "text/markdown")
            self.assertNotIn("notificationChannels", policy, "90-monitoring.sh adds the channel")
            for condition in policy["conditions"]:
                self.assertIn("resource.type=", condition["conditionThreshold"]["filter"])
                self.assertEqual(condition["conditionThreshold"]["comparison"], "COMPARISON_GT")

        def only(name):
            (condition,) = policy_json(name)["conditions"]
            return condition["conditionThreshold"]
        dead = only("dead-letters")
        self.assertIn('subscription/num_undelivered_messages"', dead["filter"])
        self.assertIn('one_of("pending_invoices-dead-letter", "paid_invoices-dead-letter")', dead["filter"])
        self.assertEqual((dead["comparison"], dead["thresholdValue"], dead["duration"]), ("COMPARISON_GT", 0, "60s"))
        backlog = only("push-backlog")
        self.assertIn('subscription/oldest_unacked_message_age"', backlog["filter"])
        self.assertIn('one_of("pending_invoices-invoice-sender", "paid_invoices-money-sender")', backlog["filter"])
        self.assertEqual((backlog["comparison"], backlog["thresholdValue"]), ("COMPARISON_GT", 900))
        spammer, reconciler = (c["conditionThreshold"] for c in policy_json("job-failed")["conditions"])
        for condition, job in ((spammer, "invoice-spammer"), (reconciler, "reconciler")):
            self.assertIn('run.googleapis.com/job/completed_execution_count"', condition["filter"])
            self.assertIn(f'resource.label."job_name"="{job}"', condition["filter"])
            self.assertIn('metric.label."result"="failed"', condition["filter"])
        self.assertEqual(policy_json("job-failed")["combiner"], "OR")
        # Any failed spammer run; the reconciler exits 1 even after a repair, so two runs in a row.
        self.assertEqual((spammer["thresholdValue"], spammer["aggregations"][0]["perSeriesAligner"]), (0, "ALIGN_SUM"))
        self.assertEqual((reconciler["thresholdValue"], reconciler["aggregations"][0]["alignmentPeriod"]), (1, "1800s"))
        for event in ALERT_EVENTS:
            log = only("log-" + event.replace("_", "-"))
            self.assertIn(f'metric.type="logging.googleapis.com/user/stark_pipeline_{event}"', log["filter"])
            self.assertEqual((log["comparison"], log["thresholdValue"]), ("COMPARISON_GT", 0))

    def test_the_dashboard_charts_credits_payouts_webhooks_latency_and_dead_letters(self):
        dashboard = dashboard_json()
        self.assertEqual(dashboard["displayName"], "stark-pipeline")
        charts = {t["widget"]["title"]: t["widget"] for t in dashboard["mosaicLayout"]["tiles"]}
        def filters(title):
            return [d["timeSeriesQuery"]["timeSeriesFilter"]["filter"] for d in charts[title]["xyChart"]["dataSets"]]
        credited = filters("Credited vs paid out, per hour")
        self.assertTrue(any("stark_pipeline_credited_invoice_published" in f for f in credited))
        self.assertTrue(any("stark_pipeline_transfer_created" in f for f in credited))
        webhook = charts["Webhook requests by answer code (webhook-ingester)"]["xyChart"]["dataSets"][0]
        self.assertIn('resource.label."service_name"="webhook-ingester"', webhook["timeSeriesQuery"]["timeSeriesFilter"]["filter"])
        self.assertEqual(webhook["timeSeriesQuery"]["timeSeriesFilter"]["aggregation"]["groupByFields"],
                         ['metric.label."response_code_class"'])
        self.assertTrue(all("push_request_latencies" in f for f in filters("Push latency, 99th and 50th percentile")))
        self.assertTrue(all("num_undelivered_messages" in f for f in filters("Dead letters waiting")))
        # Every log-based metric charted or alerted on is one 90-monitoring.sh creates.
        lib = (DEPLOY / "lib.sh").read_text()
        created = re.search(r'LOG_METRIC_EVENTS="([^"]+)"', lib).group(1).split()
        self.assertEqual(sorted(created), sorted(ALERT_EVENTS + CHART_EVENTS))
        used = set(re.findall(r"logging.googleapis.com/user/stark_pipeline_(\w+)",
                              "".join(p.read_text() for p in (DEPLOY / "monitoring").rglob("*.json"))))
        self.assertEqual(used, set(created))

    def test_the_scripts_read_each_display_name_from_its_file(self):
        for path in sorted((DEPLOY / "monitoring").rglob("*.json")):
            out = subprocess.run(["bash", "-c", f'. deploy/lib.sh && display_name "$1"', "_", str(path)],
                                 cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
            self.assertEqual(out, json.loads(path.read_text())["displayName"], path)

    def test_logged_event_names_exist_in_the_services(self):
        # The names the alerts and charts count are the `event = "..."` of the Rust code (one,
        # payout_refused_not_ours, is being added to money-sender).
        sources = "".join(p.read_text(errors="replace") for p in (REPO / "crates").rglob("*.rs"))
        for event in ["payout_rejected", "invoice_rejected", "webhook_rejected"] + CHART_EVENTS:
            self.assertIn(f'"{event}"', sources, event)

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
    classes = ["Teardown", "CampaignWindow", "StaticEgress", "FirstDeployThenRedeploy", "AfterDeploy", "DryRun",
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
