"""Standard Webhooks signatures as the LMS integration uses them: the specification's test vector, forgery,
stale and future timestamps, malformed headers, and secret rotation with a grace period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from standardwebhooks.webhooks import Webhook

from grader.errors import Unauthorized
from grader.lms import integrations
from grader.lms.crypto import decrypt, encrypt, new_webhook_secret
from tests.conftest import World
from tests.support.lms_helpers import signed_headers

# The example published with the Standard Webhooks specification (and its reference libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105  (the spec's published test secret)
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_PAYLOAD = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_spec_vector_signs_as_published() -> None:
    """Does signing the specification's example give exactly the published signature?"""
    when = datetime.fromtimestamp(SPEC_TIMESTAMP, tz=UTC)
    assert Webhook(SPEC_SECRET).sign(SPEC_MSG_ID, when, SPEC_PAYLOAD) == SPEC_SIGNATURE


def test_spec_vector_verifies_through_our_check(app: Flask, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Does our inbound check accept the spec's example when the integration holds the spec's secret and the
    clock reads the example's time — and refuse it at any other time (replayed long after)?"""
    integration, _ = integrations.add_integration("canvas", "DEMO101")
    integration.inbound_secret = encrypt(SPEC_SECRET)
    headers = {"webhook-id": SPEC_MSG_ID, "webhook-timestamp": str(SPEC_TIMESTAMP),
               "webhook-signature": SPEC_SIGNATURE}
    with pytest.raises(Unauthorized, match="too old"):
        integrations.verify_inbound(integration, SPEC_PAYLOAD.encode(), headers)

    import standardwebhooks.webhooks as sw

    class FrozenClock(datetime):
        """The library's clock, stopped 10 s after the example was signed."""

        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            """The frozen time."""
            return datetime.fromtimestamp(SPEC_TIMESTAMP + 10, tz=tz)

    monkeypatch.setattr(sw, "datetime", FrozenClock)
    integrations.verify_inbound(integration, SPEC_PAYLOAD.encode(), headers)  # no exception: accepted


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": b'{"test": 2432232315}'}, "signature"),  # one digit of the body changed
        ({"webhook-id": "msg_other"}, "signature"),  # the id is part of what is signed
        ({"secret": "whsec_" + "A" * 43}, "signature"),  # signed by someone without our secret
        ({"webhook-signature": "v1,AAAA"}, "signature"),
        ({"webhook-signature": "no-comma-here"}, "malformed"),
        ({"webhook-signature": "v1,***not base64***"}, "malformed"),
        ({"webhook-signature": "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}, "signature"),
        ({"webhook-timestamp": "yesterday"}, "headers"),
        ({"drop": "webhook-signature"}, "headers"),
        ({"drop": "webhook-id"}, "headers"),
    ],
)
def test_forged_or_malformed_signatures_are_refused(app: Flask, world: World, change: dict, reason: str) -> None:
    """Is every forged or malformed signature refused as Unauthorized (never a crash, never accepted)?"""
    integration, secrets = integrations.add_integration("canvas", "DEMO101")
    body = b'{"test": 2432232314}'
    headers = signed_headers(change.get("secret", secrets.inbound), body)
    for key in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        if key in change:
            headers[key] = change[key]
    headers.pop(change.get("drop", ""), None)
    with pytest.raises(Unauthorized) as refused:
        integrations.verify_inbound(integration, change.get("body", body), headers)
    assert reason in str(refused.value.detail).lower()


@pytest.mark.parametrize(("offset", "accepted"), [(-299, True), (-301, False), (299, True), (301, False)])
def test_timestamp_tolerance_is_five_minutes(app: Flask, world: World, offset: int, accepted: bool) -> None:
    """Is a signature accepted 299 s off the clock (either way) and refused 301 s off?"""
    integration, secrets = integrations.add_integration("canvas", "DEMO101")
    body = b"{}"
    headers = signed_headers(secrets.inbound, body, when=datetime.now(UTC) + timedelta(seconds=offset))
    if accepted:
        integrations.verify_inbound(integration, body, headers)
    else:
        with pytest.raises(Unauthorized, match=r"too (old|new)"):
            integrations.verify_inbound(integration, body, headers)


def test_rotation_keeps_the_old_secret_for_the_grace_period(app: Flask, world: World) -> None:
    """After a rotation, do both secrets verify during the grace period, and only the new one after it?"""
    integration, old = integrations.add_integration("canvas", "DEMO101")
    new = integrations.rotate("canvas", "inbound", grace=3600)
    assert new.inbound and new.inbound != old.inbound and new.outbound is None
    body = b"{}"
    integrations.verify_inbound(integration, body, signed_headers(new.inbound, body))
    integrations.verify_inbound(integration, body, signed_headers(old.inbound, body))
    integration.inbound_previous_until = datetime.now(UTC) - timedelta(seconds=1)  # the grace period ends
    with pytest.raises(Unauthorized):
        integrations.verify_inbound(integration, body, signed_headers(old.inbound, body))
    integrations.verify_inbound(integration, body, signed_headers(new.inbound, body))


def test_outbound_signature_carries_both_secrets_during_rotation(app: Flask, world: World) -> None:
    """During an outbound rotation, does the signature header verify with the old secret and the new one?"""
    integration, old = integrations.add_integration("canvas", "DEMO101")
    new = integrations.rotate("canvas", "outbound", grace=3600)
    when, payload = datetime.now(UTC), '{"type":"submission.graded"}'
    header = integrations.sign_outbound(integration, "msg_1", when, payload)
    assert len(header.split(" ")) == 2
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": header}
    for secret in (old.outbound, new.outbound):
        Webhook(secret).verify(payload, headers)


def test_secrets_are_encrypted_at_rest(app: Flask, world: World) -> None:
    """Is no secret stored in clear, and does a different SECRET_KEY fail to read them?"""
    integration, secrets = integrations.add_integration("canvas", "DEMO101")
    assert secrets.inbound and secrets.inbound.startswith("whsec_")
    assert secrets.inbound not in integration.inbound_secret
    assert decrypt(integration.inbound_secret) == secrets.inbound
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        decrypt(integration.inbound_secret, secret_key="another key entirely")  # noqa: S106
    assert new_webhook_secret() != new_webhook_secret()
