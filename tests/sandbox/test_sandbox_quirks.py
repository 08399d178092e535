"""The sandbox as a slow or normalising server: a commit delay, and quirks in what it stores and lists."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import ACCOUNT_ID, ACME_ID, TEST_KEY

from provisioner.sandbox import Faults, Quirks, Sandbox

HEADERS = {"Authorization": f"Bearer {TEST_KEY}"}
BODY = {
    "clientId": ACME_ID,
    "name": "  Acme   Q1 ",
    "startingBalance": 10,
    "creditAccountId": ACCOUNT_ID,
    "expiresOn": "2030-03-31T23:59:59Z",
}


def batches_url(sandbox: Sandbox) -> str:
    return f"{sandbox.url}/incoming/v2/clients/{ACME_ID}/creditBatches"


def listed(sandbox: Sandbox) -> list[dict]:
    answer = requests.get(batches_url(sandbox), params={"clientId": ACME_ID}, headers=HEADERS, timeout=5)
    answer.raise_for_status()
    return answer.json()["data"]["APICreditBatchesByClientAndCreditAccount"]["creditBatches"]


def test_a_commit_delay_holds_the_create_and_the_work_goes_on_after_the_client_hung_up():
    with Sandbox(api_key=TEST_KEY, faults=Faults(commit_delay=0.6)) as sandbox:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(batches_url(sandbox), json=BODY, headers=HEADERS, timeout=(1, 0.2))
        assert not sandbox.all_batches(), "not committed before the delay"
        while not sandbox.all_batches() and time.monotonic() - started < 5:
            time.sleep(0.02)
        assert len(sandbox.all_batches()) == 1, "committed after the delay, though its client had gone"
        assert time.monotonic() - started >= 0.6
        assert sandbox.stats["delayed_commits"] == 1


def test_without_quirks_a_batch_is_listed_as_it_was_sent():
    with Sandbox(api_key=TEST_KEY) as sandbox:
        requests.post(batches_url(sandbox), json=BODY, headers=HEADERS, timeout=5).raise_for_status()
        [batch] = listed(sandbox)
    assert (batch["name"], batch["clientId"], batch["expiresOn"]) == (
        "  Acme   Q1 ",
        ACME_ID,
        "2030-03-31T23:59:59.000Z",
    )


def test_quirks_trim_names_and_list_client_and_expiry_as_some_servers_do():
    with Sandbox(api_key=TEST_KEY, quirks=Quirks.named(["all"])) as sandbox:
        created = requests.post(batches_url(sandbox), json=BODY, headers=HEADERS, timeout=5).json()
        [batch] = listed(sandbox)
        [stored] = sandbox.all_batches()

    made = created["data"]["CreateCreditBatch"]
    assert made["name"] == "Acme Q1" and made["clientId"] == ACME_ID, "the create's answer shows the stored batch"
    assert (batch["name"], batch["clientId"], batch["expiresOn"]) == ("Acme Q1", None, "2030-03-31")
    assert batch["id"] == made["id"] and batch["creditAccountId"] == ACCOUNT_ID
    assert stored["clientId"] == ACME_ID and stored["expiresOn"] == "2030-03-31T23:59:59.000Z", (
        "an admin sees the truth"
    )


def test_quirks_are_named_as_the_cli_names_them():
    assert Quirks.named(["trim-names"]) == Quirks(trim_names=True)
    assert Quirks.named([]) == Quirks()
    with pytest.raises(ValueError, match="unknown quirk"):
        Quirks.named(["lowercase-everything"])
