"""Webhook integrations: register, list, rotate and remove them; verify inbound and sign outbound messages.

Signatures follow the Standard Webhooks specification through the `standardwebhooks` library (never
hand-written crypto): `webhook-id`, `webhook-timestamp` (5-minute tolerance), `webhook-signature`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from grader.database import db
from grader.errors import Conflict, NotFound, ServiceError, Unauthorized
from grader.lms import settings
from grader.lms.crypto import decrypt, encrypt, new_webhook_secret
from grader.models import utcnow
from grader.models.lms import LmsIntegration
from grader.services.accounts import course_with_code

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class NewSecrets:
    """Secrets shown once, when created or rotated (None: that one was not changed)."""

    inbound: str | None
    outbound: str | None

    def lines(self) -> list[str]:
        """The CLI's output lines: `inbound-secret: whsec_…`, `outbound-secret: whsec_…`."""
        out = []
        if self.inbound:
            out.append(f"inbound-secret: {self.inbound}")
        if self.outbound:
            out.append(f"outbound-secret: {self.outbound}")
        return out


def _check_url(url: str | None) -> str | None:
    if url in (None, ""):
        return None
    if not re.match(r"^https?://[^\s/]+", url):
        raise ServiceError(f"--outbound-url must be an http(s) URL, not {url!r}", code="bad_url")
    return url


def find_integration(name: str) -> LmsIntegration:
    """The integration called `name`, or NotFound."""
    integration = db.session.scalar(select(LmsIntegration).where(LmsIntegration.name == name))
    if integration is None:
        raise NotFound(f"no LMS integration named {name!r}")
    return integration


def add_integration(
    name: str, course_code: str, outbound_url: str | None = None
) -> tuple[LmsIntegration, NewSecrets]:
    """Register integration `name` for course `course_code`; returns it and its two new secrets."""
    if not NAME_RE.match(name):
        raise ServiceError("an integration name is 1-64 letters, digits, '.', '_' or '-'", code="bad_name")
    course = course_with_code(course_code)
    if course is None:
        raise NotFound(f"no course {course_code!r}")
    if db.session.scalar(select(LmsIntegration.id).where(LmsIntegration.name == name)) is not None:
        raise Conflict(f"an LMS integration named {name!r} already exists", code="exists")
    fresh = NewSecrets(new_webhook_secret(), new_webhook_secret())
    integration = LmsIntegration(
        name=name,
        course=course,
        outbound_url=_check_url(outbound_url),
        inbound_secret=encrypt(fresh.inbound or ""),
        outbound_secret=encrypt(fresh.outbound or ""),
    )
    db.session.add(integration)
    db.session.commit()
    return integration, fresh


def list_integrations() -> list[dict[str, Any]]:
    """Every integration, without its secrets."""
    rows = db.session.scalars(select(LmsIntegration).order_by(LmsIntegration.name))
    return [describe(i) for i in rows]


def describe(integration: LmsIntegration) -> dict[str, Any]:
    """Public facts about an integration (never a secret)."""
    now = utcnow()
    return {
        "name": integration.name,
        "course": integration.course.code,
        "outbound_url": integration.outbound_url,
        "created_at": integration.created_at.isoformat(),
        "rotated_at": integration.rotated_at.isoformat() if integration.rotated_at else None,
        "inbound_grace_until": _grace(integration.inbound_previous_until, now),
        "outbound_grace_until": _grace(integration.outbound_previous_until, now),
    }


def _grace(until: datetime | None, now: datetime) -> str | None:
    return until.isoformat() if until is not None and until > now else None


def rotate(name: str, which: str = "both", grace: float | None = None) -> NewSecrets:
    """Replace the inbound and/or outbound secret; the old one stays valid for `grace` seconds."""
    if which not in ("inbound", "outbound", "both"):
        raise ServiceError("which must be inbound, outbound or both", code="bad_choice")
    integration = find_integration(name)
    now = utcnow()
    until = now + timedelta(seconds=settings.secret_grace() if grace is None else grace)
    fresh = NewSecrets(None, None)
    if which in ("inbound", "both"):
        fresh.inbound = new_webhook_secret()
        integration.inbound_previous, integration.inbound_previous_until = integration.inbound_secret, until
        integration.inbound_secret = encrypt(fresh.inbound)
    if which in ("outbound", "both"):
        fresh.outbound = new_webhook_secret()
        integration.outbound_previous, integration.outbound_previous_until = (
            integration.outbound_secret,
            until,
        )
        integration.outbound_secret = encrypt(fresh.outbound)
    integration.rotated_at = now
    db.session.commit()
    return fresh


def set_outbound_url(name: str, url: str | None) -> LmsIntegration:
    """Change (or clear) where events are sent."""
    integration = find_integration(name)
    integration.outbound_url = _check_url(url)
    db.session.commit()
    return integration


def remove(name: str) -> None:
    """Delete the integration, its delivery log and its replay records."""
    integration = find_integration(name)
    db.session.delete(integration)
    db.session.commit()


def _valid_secrets(integration: LmsIntegration, direction: str) -> list[str]:
    """The current secret, then the previous one while its grace period lasts."""
    current = getattr(integration, f"{direction}_secret")
    previous = getattr(integration, f"{direction}_previous")
    until = getattr(integration, f"{direction}_previous_until")
    found = [decrypt(current)]
    if previous and until is not None and until > utcnow():
        found.append(decrypt(previous))
    return found


def verify_inbound(integration: LmsIntegration, body: bytes, headers: dict[str, str]) -> None:
    """Unauthorized unless `body` carries a valid, fresh Standard Webhooks signature by a valid secret."""
    reason = "missing or invalid signature"
    for secret in _valid_secrets(integration, "inbound"):
        try:
            # json_parse=False: a signed but malformed body is the caller's 400, not a 401.
            Webhook(secret).verify(body, headers, json_parse=False)
            return
        except WebhookVerificationError as exc:
            reason = str(exc)
            if "timestamp" in reason.lower() or "headers" in reason.lower():
                break  # no other secret can fix a stale timestamp or a missing header
        except (ValueError, TypeError) as exc:
            # The library raises these for a malformed signature header (no comma, bad base64) or a
            # body that is not UTF-8: still just a bad signature.
            reason = f"malformed signature ({type(exc).__name__})"
    raise Unauthorized(reason, code="bad_signature")


def sign_outbound(integration: LmsIntegration, msg_id: str, when: datetime, payload: str) -> str:
    """The `webhook-signature` header: one `v1,…` per valid outbound secret (two during a rotation)."""
    return " ".join(
        Webhook(secret).sign(msg_id, when, payload) for secret in _valid_secrets(integration, "outbound")
    )
