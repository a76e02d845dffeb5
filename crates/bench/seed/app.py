"""The seed's webhook, as a minimal Flask app, for the side-by-side benchmark.

What the seed did with a Stark Bank webhook, and nothing more: parse and verify it with the
official Python SDK (`starkbank.event.parse(content=body, signature=header)`), print one line
for a credited invoice, answer 200. It publishes nowhere. An invalid signature raises, which
Flask answers with 500, as the seed did.

Run by `side-by-side` (crates/bench/src/bin/side-by-side.rs) under gunicorn with one worker:

    gunicorn --workers 1 --bind 127.0.0.1:PORT --chdir crates/bench/seed app:app

Environment:
  SEED_STARK_ROOT        http://127.0.0.1:PORT of the local Stark (stark-sandbox), without /v2
  SEED_PROJECT_ID        a project registered there
  SEED_PRIVATE_KEY_PATH  that project's private key (PEM)

The SDK hard-codes Stark's hosts. As in crates/stark-sandbox/tests/python/compat.py, starkcore's
request functions are re-bound so that the one request the SDK makes here, the
`GET /v2//public-key?limit=1` of the first parse (the key is cached after it), goes to the
local Stark. Parsing and verification stay entirely the SDK's.
"""
import os

import requests
import starkcore.utils.rest as core_rest
from flask import Flask, request

import starkbank

ROOT = os.environ["SEED_STARK_ROOT"]


def _redirect(fn):
    def wrapper(url, **kw):
        return fn(url.replace("https://sandbox.api.starkbank.com", ROOT, 1), **kw)

    return wrapper


for _name in ("get", "post", "patch", "put", "delete"):
    setattr(core_rest, _name, _redirect(getattr(requests, _name)))

with open(os.environ["SEED_PRIVATE_KEY_PATH"]) as _key:
    starkbank.user = starkbank.Project(
        environment="sandbox",
        id=os.environ["SEED_PROJECT_ID"],
        private_key=_key.read(),
    )

app = Flask(__name__)


@app.post("/webhook")
def webhook():
    event = starkbank.event.parse(
        content=request.data.decode("utf-8"),
        signature=request.headers["Digital-Signature"],
    )
    if event.subscription == "invoice" and event.log.type == "credited":
        print("credited invoice", event.log.invoice.id, event.log.invoice.amount)
    return "", 200


@app.get("/healthz")
def healthz():
    return "ok", 200
