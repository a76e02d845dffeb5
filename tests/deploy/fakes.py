"""Fake `gcloud` and `stark-pipeline` for the deploy script tests.

Invoked as `python3 fakes.py gcloud ARGS...` or `python3 fakes.py stark-pipeline ARGS...`
(the tests put two small wrappers named gcloud and stark-pipeline first on PATH).

Every call appends one line, the shell-quoted command, to $FAKE_LOG. Resources live in the JSON
file $FAKE_STATE, shared by both fakes, so that the scripts' describe-before-create logic meets
the same answers as against Google Cloud: a describe of something never created fails with
NOT_FOUND, a create of something that exists fails with ALREADY_EXISTS, an IAM binding on a
missing resource fails. `stark-pipeline provision` creates the Pub/Sub resources the way the real
CLI does (crates/gcp-pubsub/src/topology.rs), so that 60-pubsub.sh finds them afterwards.

Only the command shapes the deploy scripts use are understood; anything else exits 2 so that a
typo in a script fails the tests instead of passing silently. Flags must be written
--name=value (the scripts' convention) and every gcloud call but `auth configure-docker` must
name --project (`projects describe P` names it as its argument).

FAKE_PROVISION_BROKEN=retention|dead-letter|oidc|dead-letter-retention|backoff makes provision
"forget" that setting, to test that 60-pubsub.sh notices. FAKE_SUBNET_IN_USE=1 makes a subnet
delete fail the way it does while Cloud Run still holds addresses in it.

Monitoring resources (alert policies, notification channels, dashboards) get names made up
here, as Google does, and are listed with `--filter=displayName="..."`; `alpha` and `beta`
command prefixes are ignored.
"""

import json
import os
import shlex
import sys

VERBS = {
    "describe", "create", "delete", "deploy", "update", "add-iam-policy-binding",
    "get-iam-policy", "enable", "submit", "access", "add", "pause", "resume",
    "configure-docker", "list", "remove-iam-policy-binding",
}

# Resources Google names itself: kind -> (name pattern, how the display name is given).
NAMED = {
    "monitoring policies": "projects/{project}/alertPolicies/{n}",
    "monitoring channels": "projects/{project}/notificationChannels/{n}",
    "monitoring dashboards": "projects/" + "123456789012" + "/dashboards/{n}",
}

# What `gcloud builds submit` of deploy/cloudbuild.yaml pushes.
IMAGES = ["invoice-spammer", "invoice-sender", "webhook-ingester", "money-sender", "stark-pipeline"]

PROJECT_NUMBER = "123456789012"


class Fail(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def load_state():
    path = os.environ["FAKE_STATE"]
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"resources": {}, "iam": {}, "webhooks": []}


def save_state(state):
    path = os.environ["FAKE_STATE"]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def log(program, argv):
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(shlex.join([program] + argv) + "\n")


def parse(argv):
    positionals, flags = [], {}
    for arg in argv:
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            flags[name] = value if sep else True
        elif arg.startswith("-") and arg != "-":
            raise Fail(2, f"fake: short flag {arg!r}: write --name=value")
        else:
            positionals.append(arg)
    return positionals, flags


def lookup(attrs, path):
    value = attrs
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return ""
        value = value[part]
    if value is True:
        return "True"
    if value is False:
        return "False"
    return str(value)


def render(attrs, fmt):
    """gcloud's `value(a,b)` and `value[separator=X](a,b)` formats; anything else: key: value lines."""
    if isinstance(fmt, str) and fmt.startswith("value"):
        rest = fmt[len("value"):]
        separator = "\t"
        if rest.startswith("["):
            options, _, rest = rest[1:].partition("]")
            key, _, value = options.partition("=")
            if key != "separator":
                raise Fail(2, f"fake: unsupported format option {options!r}")
            separator = value.strip('"\'')
        if not (rest.startswith("(") and rest.endswith(")")):
            raise Fail(2, f"fake: unsupported format {fmt!r}")
        fields = [f.strip() for f in rest[1:-1].split(",")]
        rows = attrs if isinstance(attrs, list) else [attrs]
        return "".join(separator.join(lookup(row, f) for f in fields) + "\n" for row in rows)
    if fmt is not True and fmt:
        raise Fail(2, f"fake: unsupported format {fmt!r}")
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in sorted(attrs.items()))


def gcloud(argv):
    positionals, flags = parse(argv)
    verb_at = next((i for i, p in enumerate(positionals) if p in VERBS), None)
    if verb_at is None:
        raise Fail(2, f"fake gcloud: unsupported command {argv!r}")
    group, verb, rest = positionals[:verb_at], positionals[verb_at], positionals[verb_at + 1:]
    if group[:1] in (["alpha"], ["beta"]):
        group = group[1:]
    if group == ["scheduler", "jobs"] and verb in ("create", "update"):
        if rest[:1] != ["http"]:
            raise Fail(2, "fake gcloud: only http scheduler jobs")
        rest = rest[1:]
    if group == ["run"] and verb == "deploy":
        group = ["run", "services"]
    kind = " ".join(group)
    project = flags.get("project")
    if not project and kind not in ("auth", "projects"):
        raise Fail(2, f"fake gcloud: {kind} {verb} without --project")
    state = load_state()
    resources, iam = state["resources"], state["iam"]

    if kind in NAMED:
        return monitoring(state, kind, verb, rest, flags, project)
    if kind == "projects" and verb in ("get-iam-policy", "add-iam-policy-binding", "remove-iam-policy-binding"):
        # The project always exists; only its bindings are kept.
        key = f"projects||{rest[0]}"
        if verb == "get-iam-policy":
            return "".join(f"{role}\t{member}\n" for role, member in iam.get(key, []))
        if flags.get("condition") != "None":
            raise Fail(2, "fake gcloud: project bindings need --condition=None (or gcloud may ask)")
        binding = [flags["role"], flags["member"]]
        bindings = iam.setdefault(key, [])
        if verb == "add-iam-policy-binding":
            if binding not in bindings:
                bindings.append(binding)
        else:
            if binding not in bindings:
                raise Fail(1, f"Policy binding with the specified principal, role, and condition not found!")
            bindings.remove(binding)
            if not bindings:
                del iam[key]
        save_state(state)
        return ""
    if kind == "compute networks subnets" and verb == "delete" and os.environ.get("FAKE_SUBNET_IN_USE"):
        raise Fail(1, "Could not fetch resource:\n - The subnetwork resource "
                      f"'projects/{project}/regions/{flags.get('region')}/subnetworks/{rest[0]}' is already "
                      f"being used by 'projects/{project}/regions/{flags.get('region')}/addresses/serverless-ipv4-1'")
    if kind == "services" and verb == "enable":
        for api in rest:
            resources[f"services||{api}"] = {"enabled": True}
        save_state(state)
        return ""
    if kind == "auth" and verb == "configure-docker":
        return ""
    if kind == "projects" and verb == "describe":
        return render({"projectId": rest[0], "projectNumber": PROJECT_NUMBER}, flags.get("format"))
    if kind == "builds" and verb == "submit":
        subs = dict(pair.split("=", 1) for pair in flags["substitutions"].split(","))
        for image in IMAGES:
            resources[f"artifacts docker images||{subs['_REGISTRY']}/{image}:{subs['_TAG']}"] = {"built": True}
        save_state(state)
        return ""
    if kind == "secrets versions":
        if verb == "describe":
            versions = resources.get(f"secrets||{flags.get('secret')}", {}).get("versions", [])
            if rest != ["latest"] or not versions:
                raise Fail(1, "NOT_FOUND: Secret Version [latest] not found")
            name = f"projects/{PROJECT_NUMBER}/secrets/{flags['secret']}/versions/{len(versions)}"
            return render({"name": name, "state": "ENABLED"}, flags.get("format"))
        if verb == "access":
            versions = resources.get(f"secrets||{flags.get('secret')}", {}).get("versions", [])
            if rest != ["latest"] or not versions:
                raise Fail(1, "NOT_FOUND: Secret Version [latest] not found")
            return versions[-1]
        if verb == "add":
            secret = resources.get(f"secrets||{rest[0]}")
            if secret is None:
                raise Fail(1, f"NOT_FOUND: Secret [{rest[0]}] not found")
            with open(flags["data-file"]) as f:
                secret.setdefault("versions", []).append(f.read())
            save_state(state)
            return ""
        raise Fail(2, f"fake gcloud: unsupported secrets versions {verb}")

    if not rest:
        raise Fail(2, f"fake gcloud: {kind} {verb} without a name")
    name = rest[0]
    if kind == "iam service-accounts" and verb == "create":
        name = f"{name}@{project}.iam.gserviceaccount.com"
    if kind == "compute routers nats":
        name = f"{flags['router']}/{name}"
    location = flags.get("region") or flags.get("location") or ""
    if kind == "storage buckets":
        location = ""  # buckets are global names; describe takes no location
    key = f"{kind}|{location}|{name}"
    attrs = {k: v for k, v in flags.items() if k not in ("project", "quiet", "format", "flatten")}

    def existing():
        if key not in resources:
            raise Fail(1, f"NOT_FOUND: {kind} [{name}] not found")
        return resources[key]

    if verb == "describe":
        return render(existing(), flags.get("format"))
    if verb == "create":
        if key in resources:
            raise Fail(1, f"ALREADY_EXISTS: {kind} [{name}] already exists")
        if kind == "compute addresses":
            attrs["address"] = "203.0.113.7"
        if kind == "scheduler jobs":
            attrs["state"] = "ENABLED"
        resources[key] = attrs
        save_state(state)
        return ""
    if verb == "deploy":
        if kind == "run services":
            attrs["status"] = {"url": f"https://{name}-x7q2k4dzna-rj.a.run.app"}
        resources[key] = attrs
        save_state(state)
        return ""
    if verb == "update":
        existing().update(attrs)
        save_state(state)
        return ""
    if verb in ("pause", "resume"):
        existing()["state"] = "PAUSED" if verb == "pause" else "ENABLED"
        save_state(state)
        return ""
    if verb == "delete":
        existing()
        del resources[key]
        iam.pop(key, None)
        if kind == "artifacts repositories":
            # Deleting a repository deletes its images.
            prefix = f"artifacts docker images||{location}-docker.pkg.dev/{project}/{name}/"
            for image in [k for k in resources if k.startswith(prefix)]:
                del resources[image]
        save_state(state)
        return ""
    if verb == "get-iam-policy":
        existing()
        if flags.get("flatten") != "bindings[].members" or flags.get("format") != "value(bindings.role,bindings.members)":
            raise Fail(2, "fake gcloud: get-iam-policy is only answered as role<TAB>member lines")
        return "".join(f"{role}\t{member}\n" for role, member in iam.get(key, []))
    if verb == "remove-iam-policy-binding":
        existing()
        binding = [flags["role"], flags["member"]]
        bindings = iam.get(key, [])
        if binding not in bindings:
            raise Fail(1, "Policy binding with the specified principal and role not found!")
        bindings.remove(binding)
        if not bindings:
            del iam[key]
        save_state(state)
        return ""
    if verb == "add-iam-policy-binding":
        existing()
        binding = [flags["role"], flags["member"]]
        bindings = iam.setdefault(key, [])
        if binding not in bindings:
            bindings.append(binding)
        save_state(state)
        return "bindings:\n" + "".join(f"- members: [{m}]\n  role: {r}\n" for r, m in bindings)
    raise Fail(2, f"fake gcloud: unsupported command {argv!r}")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def monitoring(state, kind, verb, rest, flags, project):
    """Alert policies, notification channels and dashboards: named by Google, found by display name."""
    resources = state["resources"]
    prefix = f"{kind}||"
    if verb == "list":
        wanted = None
        if "filter" in flags:
            filt = flags["filter"]
            if not (filt.startswith('displayName="') and filt.endswith('"')):
                raise Fail(2, f"fake gcloud: unsupported filter {filt!r}")
            wanted = filt[len('displayName="'):-1]
        rows = [v for k, v in sorted(resources.items()) if k.startswith(prefix)
                and (wanted is None or v["displayName"] == wanted)]
        return render(rows, flags.get("format")) if rows else ""
    if verb == "create":
        counter = state.setdefault("counter", 0) + 1
        state["counter"] = counter
        name = NAMED[kind].format(project=project, n=counter)
        if kind == "monitoring policies":
            body = read_json(flags["policy-from-file"])
            attrs = {"displayName": body["displayName"], "policy": body,
                     "notificationChannels": flags["notification-channels"].split(",")}
        elif kind == "monitoring dashboards":
            body = read_json(flags["config-from-file"])
            attrs = {"displayName": body["displayName"], "dashboard": body}
        else:
            labels = dict(pair.split("=", 1) for pair in flags["channel-labels"].split(","))
            attrs = {"displayName": flags["display-name"], "type": flags["type"], "labels": labels}
        attrs["name"] = name
        resources[prefix + name] = attrs
        save_state(state)
        return f"Created [{name}].\n"
    if not rest:
        raise Fail(2, f"fake gcloud: {kind} {verb} without a name")
    key = prefix + rest[0]
    if key not in resources:
        raise Fail(1, f"NOT_FOUND: {kind} [{rest[0]}] not found")
    attrs = resources[key]
    if verb == "describe":
        return render(attrs, flags.get("format"))
    if verb == "update":
        if kind == "monitoring policies":
            body = read_json(flags["policy-from-file"])
            attrs.update(displayName=body["displayName"], policy=body,
                         notificationChannels=flags["set-notification-channels"].split(","))
        elif kind == "monitoring dashboards":
            body = read_json(flags["config-from-file"])
            attrs.update(displayName=body["displayName"], dashboard=body)
        else:
            attrs["labels"].update(dict(pair.split("=", 1) for pair in flags["update-channel-labels"].split(",")))
        save_state(state)
        return ""
    if verb == "delete":
        if kind == "monitoring channels" and "force" not in flags:
            users = [v["displayName"] for k, v in resources.items() if k.startswith("monitoring policies||")
                     and rest[0] in v["notificationChannels"]]
            if users:
                raise Fail(1, f"FAILED_PRECONDITION: channel is used by {users}; use --force")
        del resources[key]
        save_state(state)
        return ""
    raise Fail(2, f"fake gcloud: unsupported {kind} {verb}")


def flag_values(argv):
    """clap-style flags: --name=value or --name value."""
    values, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            if not sep:
                if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    value = True
                else:
                    i += 1
                    value = argv[i]
            values[name] = value
        i += 1
    return values


def stark_pipeline(argv):
    if argv[:1] == ["provision"]:
        flags = flag_values(argv[1:])
        for required in ("project", "invoice-sender-url", "money-sender-url"):
            if required not in flags:
                raise Fail(2, f"error: --{required} is required")
        if flags.get("dry-run"):
            return "(dry run)\n"
        project = flags["project"]
        broken = os.environ.get("FAKE_PROVISION_BROKEN", "")
        attempts = int(flags.get("max-delivery-attempts", 5))
        backoff = {"minimumBackoff": f"{flags.get('min-backoff-seconds', 10)}s",
                   "maximumBackoff": f"{flags.get('max-backoff-seconds', 600)}s"}
        if broken == "backoff":
            backoff = {"minimumBackoff": "10s", "maximumBackoff": "60s"}
        state = load_state()
        resources = state["resources"]
        topics = f"projects/{project}/topics"
        flows = [
            ("pending_invoices", "pending_invoices-invoice-sender", "invoice-sender"),
            ("paid_invoices", "paid_invoices-money-sender", "money-sender"),
        ]
        for topic, subscription, service in flows:
            dead_letter = f"{topic}-dead-letter"
            retained = {"messageRetentionDuration": "604800s", "retainAckedMessages": True}
            if broken == "retention":
                retained = {"messageRetentionDuration": "86400s", "retainAckedMessages": False}
            dead_retained = {"messageRetentionDuration": "2678400s", "retainAckedMessages": True}
            if broken == "dead-letter-retention":
                dead_retained = {"messageRetentionDuration": "604800s", "retainAckedMessages": True}
            resources[f"pubsub topics||{topic}"] = {"name": f"{topics}/{topic}"}
            resources[f"pubsub topics||{dead_letter}"] = {"name": f"{topics}/{dead_letter}"}
            resources[f"pubsub subscriptions||{dead_letter}"] = dict(
                dead_retained, topic=f"{topics}/{dead_letter}", ackDeadlineSeconds=60, retryPolicy=backoff)
            push = {"pushEndpoint": flags[f"{service}-url"]}
            if "push-service-account" in flags and broken != "oidc":
                push["oidcToken"] = {
                    "serviceAccountEmail": flags["push-service-account"],
                    "audience": flags.get(f"audience-{service}", ""),
                }
            sub = dict(retained, topic=f"{topics}/{topic}", pushConfig=push, ackDeadlineSeconds=60,
                       retryPolicy=backoff)
            if broken != "dead-letter":
                sub["deadLetterPolicy"] = {"deadLetterTopic": f"{topics}/{dead_letter}", "maxDeliveryAttempts": attempts}
            resources[f"pubsub subscriptions||{subscription}"] = sub
        save_state(state)
        return "applied\n"
    if argv[:2] == ["webhook", "register"]:
        flags = flag_values(argv[2:])
        if "url" not in flags:
            raise Fail(2, "error: --url is required")
        for variable in ("STARK_ACCESS_ID", "STARK_ENVIRONMENT", "STARK_PRIVATE_KEY_FILE"):
            if not os.environ.get(variable):
                raise Fail(2, f"error: {variable} is not set")
        if not os.path.isfile(os.environ["STARK_PRIVATE_KEY_FILE"]):
            raise Fail(2, "error: STARK_PRIVATE_KEY_FILE is not a file")
        state = load_state()
        if flags["url"] not in state["webhooks"]:
            state["webhooks"].append(flags["url"])
            save_state(state)
            return f"registered {flags['url']}\n"
        return f"already registered {flags['url']}\n"
    raise Fail(2, f"fake stark-pipeline: unsupported command {argv!r}")


def main():
    program, argv = sys.argv[1], sys.argv[2:]
    log(program, argv)
    try:
        out = gcloud(argv) if program == "gcloud" else stark_pipeline(argv)
    except Fail as fail:
        prefix = "ERROR: (gcloud) " if program == "gcloud" else ""
        sys.stderr.write(f"{prefix}{fail.message}\n")
        sys.exit(fail.code)
    sys.stdout.write(out)


if __name__ == "__main__":
    main()
