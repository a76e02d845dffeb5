"""Runs the official Stark Bank Python SDK against a local stark-sandbox.

Environment (set by tests/python_sdk.rs):
  SANDBOX_ROOT      http://127.0.0.1:PORT (the sandbox, without /v2)
  PROJECT_ID        a project registered in the sandbox
  PRIVATE_KEY_PATH  its private key PEM (SEC1, as starkbank.key.create writes it)
  RECEIVER_URL      where the sandbox should post webhooks (answers 200)
  PAY_DELAY_SECS    sandbox seconds until invoices are paid (the script moves the clock)
  LISTING_LAG_SECS  sandbox seconds before new objects show up in list queries

Exits non-zero with a message on the first mismatch. Prints one JSON summary line on success.
"""
import json
import os
import random
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import requests
import starkcore.utils.rest as core_rest

import starkbank
from starkbank.error import InputErrors

ROOT = os.environ["SANDBOX_ROOT"]


def _redirect(fn):
    # docs/stark-api.md, "Base URLs and paths": the SDK hard-codes its hosts; re-binding starkcore's request
    # functions sends every call (event.parse's public-key fetch included) to the sandbox.
    def wrapper(url, **kw):
        return fn(url.replace("https://sandbox.api.starkbank.com", ROOT, 1), **kw)

    return wrapper


for name in ("get", "post", "patch", "put", "delete"):
    setattr(core_rest, name, _redirect(getattr(requests, name)))


def advance(seconds):
    # Moves the sandbox clock, so that what the script waits for happens when it chooses.
    answer = requests.post(ROOT + "/_sandbox/advance", json={"seconds": seconds}, timeout=10)
    check(answer.status_code == 200, "advance: %s" % answer.text)


def past_listing_lag():
    # Lists trail creates (GET by id does not): move the clock past the lag before listing.
    advance(int(os.environ["LISTING_LAG_SECS"]))


def check(condition, message):
    if not condition:
        print("MISMATCH: " + message, file=sys.stderr)
        sys.exit(1)


with open(os.environ["PRIVATE_KEY_PATH"]) as f:
    private_key = f.read()

starkbank.user = starkbank.Project(
    environment="sandbox",
    id=os.environ["PROJECT_ID"],
    private_key=private_key,
)

# Webhook first, so that every later log produces a delivery.
webhook = starkbank.webhook.create(url=os.environ["RECEIVER_URL"], subscriptions=["invoice", "transfer"])
check(len(webhook.id) == 16, "webhook id %r" % webhook.id)
check([w.id for w in starkbank.webhook.query()] == [webhook.id], "webhook.query")

# Invoices, with every optional field the SDK README shows.
due = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
invoices = starkbank.invoice.create([
    starkbank.Invoice(
        amount=23571,
        name="Jo\u00e3o da Silva",
        tax_id="012.345.678-90",
        due=due,
        expiration=timedelta(hours=3),
        fine=5,
        interest=2.5,
        discounts=[{"percentage": 10, "due": "2030-01-01"}],
        descriptions=[{"key": "Product A", "value": "R$10,00"}],
        rules=[{"key": "allowedTaxIds", "value": ["012.345.678-90"]}],
        tags=["Immediate"],
    ),
    starkbank.Invoice(amount=1000, name="Maria", tax_id="20.018.183/0001-80"),
    starkbank.Invoice(amount=2000, name="Jos\u00e9", tax_id="01234567890", tags=["paging"]),
])
check(len(invoices) == 3, "created %d invoices" % len(invoices))
first = invoices[0]
check(first.tags == ["immediate"], "tags not lowercased: %r" % first.tags)
check(first.name == "Jo\u00e3o da Silva", "name %r" % first.name)
check(first.status == "created", "status %r" % first.status)
check(first.expiration == timedelta(hours=3), "expiration %r" % first.expiration)
check(isinstance(first.created, datetime), "created %r" % first.created)
check(invoices[2].tax_id == "012.345.678-90", "tax id formatted: %r" % invoices[2].tax_id)

check(starkbank.invoice.get(first.id).id == first.id, "invoice.get at once")
past_listing_lag()
queried = list(starkbank.invoice.query(tags=["immediate"]))
check([i.id for i in queried] == [first.id], "query by tags")
everything = list(starkbank.invoice.query(limit=10))
check(len(everything) == 3, "query all: %d" % len(everything))
page, cursor = starkbank.invoice.page(limit=2)
check(len(page) == 2 and cursor, "first page")
rest, cursor = starkbank.invoice.page(limit=2, cursor=cursor)
check(len(rest) == 1 and cursor is None, "second page")
check(starkbank.invoice.get(first.id).amount == 23571, "invoice.get")
try:
    starkbank.invoice.get("1234567890123456")
    check(False, "unknown invoice accepted")
except InputErrors as e:
    check(e.errors[0].code == "invalidInvoice", "unknown invoice code %r" % e.errors[0].code)
logs = list(starkbank.invoice.log.query(invoice_ids=[first.id]))
check([l.type for l in logs] == ["created"], "invoice logs %r" % [l.type for l in logs])

# A batch with a bad tax id fails item by item.
try:
    starkbank.invoice.create([starkbank.Invoice(amount=1, name="X", tax_id="000.000.000-00")])
    check(False, "bad tax id accepted")
except InputErrors as e:
    check([x.code for x in e.errors] == ["invalidTaxId"], "tax id errors %r" % [x.code for x in e.errors])

# Transfers; a repeated externalId is a 400 on that item.
transfer_args = dict(
    amount=100,
    bank_code="20018183",
    branch_code="0001",
    account_number="10000-0",
    account_type="checking",
    tax_id="012.345.678-90",
    name="Tony Stark",
    external_id="py-ext-1",
    tags=["X"],
    rules=[{"key": "resendingLimit", "value": 5}],
)
transfers = starkbank.transfer.create([starkbank.Transfer(**transfer_args)])
check(transfers[0].status == "created" and transfers[0].tags == ["x"], "transfer %r" % transfers[0])
check(starkbank.transfer.get(transfers[0].id).external_id == "py-ext-1", "transfer.get")
past_listing_lag()
try:
    starkbank.transfer.create([starkbank.Transfer(**transfer_args)])
    check(False, "repeated externalId accepted")
except InputErrors as e:
    check(e.errors[0].code == "invalidExternalId", "duplicate code %r" % e.errors[0].code)
check(len(list(starkbank.transfer.query(tags=["x"]))) == 1, "transfer.query")

# Webhook bodies the sandbox delivered, parsed (and signature-checked) by the SDK. The sandbox
# pays the invoices by itself once their pay delay has passed, so paid and credited events come too.
advance(int(os.environ["PAY_DELAY_SECS"]))
deadline = time.time() + 60
while True:
    state = requests.get(ROOT + "/_sandbox/state", timeout=10).json()
    delivered = [d for d in state["deliveries"] if d["outcome"]["kind"] == "delivered"]
    credited = [d for d in delivered if '"type": "credited"' in d["body"]]
    if len(credited) >= 3 and {d["highS"] for d in delivered} == {True, False}:
        break
    check(time.time() < deadline, "deliveries: %d delivered, %d credited" % (len(delivered), len(credited)))
    time.sleep(0.2)



def valid_cpf(rng):
    # Nine random digits and their two check digits (weights n+1 down to 2, mod 11).
    digits = [rng.randint(0, 9) for _ in range(9)]
    while len(set(digits)) == 1:
        digits = [rng.randint(0, 9) for _ in range(9)]
    for _ in range(2):
        total = sum(d * w for d, w in zip(digits, range(len(digits) + 1, 1, -1)))
        digits.append(0 if total % 11 < 2 else 11 - total % 11)
    return "".join(str(d) for d in digits)


# The official SDK's own transfer test (tests/sdk/test_transfer.py, TestTransferPost) creates
# five transfers to random receivers, each scheduled `date.today()` or `datetime.utcnow()` plus
# 0 to 10 days, and expects all of them accepted. `utcnow()` plus 0 days is already in the past
# when it arrives (the SDK drops the microseconds), and by now the sandbox clock is a day ahead
# of this one: every shape must still be accepted, as Stark accepts it.
rng = random.Random(7)
schedules = [
    datetime.utcnow(),
    date.today(),
    datetime.utcnow() + timedelta(days=rng.randint(1, 10)),
    date.today() + timedelta(days=rng.randint(1, 10)),
    datetime.utcnow(),
]
sdk_test_transfers = starkbank.transfer.create([
    starkbank.Transfer(
        amount=rng.randint(100000, 1000000),
        name="Receiver %d" % n,
        tax_id=valid_cpf(rng),
        bank_code=rng.choice(["18236120", "60701190"]),
        branch_code=str(rng.randint(1, 999)),
        account_number="%d-%d" % (rng.randint(10000, 100000000), rng.randint(0, 9)),
        account_type=rng.choice(["checking", "savings", "salary", "payment"]),
        external_id=str(uuid.uuid4()),
        rules=[starkbank.transfer.Rule(key="resendingLimit", value=rng.randint(0, 10))],
        description=rng.choice([None, "Test description"]),
        scheduled=scheduled,
    )
    for n, scheduled in enumerate(schedules)
])
check(len(sdk_test_transfers) == 5, "SDK test shape: %d transfers" % len(sdk_test_transfers))
for created in sdk_test_transfers:
    check(created.id is not None, "SDK test shape: transfer id")
    check(all(r.value is not None for r in created.rules if r.key == "resendingLimit"), "rules")

parsed = 0
for delivery in delivered:
    event = starkbank.event.parse(content=delivery["body"], signature=delivery["signature"])
    check(event.id == delivery["eventId"], "event id")
    check(event.subscription in ("invoice", "transfer"), "subscription %r" % event.subscription)
    if event.subscription == "invoice":
        check(event.log.invoice.id in [i.id for i in invoices], "event invoice id")
        if event.log.type == "credited":
            check(event.log.invoice.status == "paid", "credited status")
            check(len(event.log.invoice.transaction_ids) == 1, "transaction ids")
    else:
        check(event.log.transfer.id == transfers[0].id, "event transfer id")
    parsed += 1

try:
    starkbank.event.parse(content=delivered[0]["body"].replace("invoice", "invoicx", 1), signature=delivered[0]["signature"])
    check(False, "tampered body accepted")
except starkbank.error.InvalidSignatureError:
    pass

events = list(starkbank.event.query(is_delivered=True, limit=5))
check(len(events) == 5 and all(e.is_delivered for e in events), "event.query(is_delivered=True)")
check(starkbank.event.get(events[0].id).id == events[0].id, "event.get")
updated = starkbank.event.update(events[0].id, is_delivered=True)
check(updated.is_delivered is True, "event.update")
undelivered = list(starkbank.event.query(is_delivered=False))
check(all(e.is_delivered is False for e in undelivered), "event.query(is_delivered=False)")
check(list(starkbank.event.attempt.query(limit=5)) == [], "event.attempt.query: the receiver always answered 200")

balance = starkbank.balance.get()
check(isinstance(balance.amount, int) and balance.currency == "BRL", "balance %r" % balance)
check(len(balance.id) == 16 and isinstance(balance.updated, datetime), "balance %r" % balance)

print(json.dumps({
    "ok": True,
    "invoices": len(invoices),
    "transfers": len(transfers),
    "sdk_test_transfers": len(sdk_test_transfers),
    "parsed_events": parsed,
    "high_s": sum(1 for d in delivered if d["highS"]),
    "low_s": sum(1 for d in delivered if not d["highS"]),
}))
