"""Addresses are made and taken apart in one module (core/addresses.py)."""

from provisioner.core.addresses import ADDRESS, client_of, grant_address, period_of, split_address


def test_a_batch_address():
    assert ADDRESS.fullmatch("acme/2026-q1")
    assert client_of("acme/2026-q1") == "acme"
    assert split_address("acme/2026-q1") == ("acme", "2026-q1")
    assert grant_address("acme/2026-q1") is None and period_of("acme/2026-q1") == ""


def test_a_grant_period_address():
    address = "acme/quarterly@2026-q1"
    assert ADDRESS.fullmatch(address)
    assert client_of(address) == "acme"
    assert split_address(address) == ("acme", "quarterly@2026-q1")
    assert grant_address(address) == "acme/quarterly" and period_of(address) == "2026-q1"


def test_what_is_not_an_address():
    for text in ("acme", "Acme/q1", "acme/q1@2026-q5", "acme/q1/extra", "/q1"):
        assert not ADDRESS.fullmatch(text), text
