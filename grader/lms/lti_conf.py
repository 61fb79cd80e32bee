"""PyLTI1p3 backed by the database: platform registrations, deployments, launch state, HTTP with timeouts.

`grader lms lti add` stores a registration (issuer, client id, key set URL, token URL, auth login URL) with a
fresh tool key pair, and a deployment tied to a course; `ToolConf` hands them to PyLTI1p3.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pylti1p3.deployment import Deployment
from pylti1p3.launch_data_storage.base import LaunchDataStorage
from pylti1p3.registration import Registration
from pylti1p3.service_connector import REQUESTS_USER_AGENT
from pylti1p3.tool_config.abstract import ToolConfAbstract
from sqlalchemy import delete, select

from grader.database import db
from grader.errors import NotFound, ServiceError
from grader.lms import settings
from grader.lms.crypto import decrypt, encrypt
from grader.lms.retries import end_reads
from grader.models import utcnow
from grader.models.lms import LtiDeployment, LtiLaunchData, LtiRegistration
from grader.services.accounts import course_with_code


class TimeoutSession(requests.Session):
    """A requests session with a timeout on every call (PyLTI1p3 sets none: a hung platform hangs us), each made
    out of any database transaction (`retries.end_reads`): PyLTI1p3 reads registrations and nonces from our
    database between its calls to the platform (a launch's key fetch, AGS's token request and score), so the
    session ends the transaction itself rather than every caller between every step."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.headers["User-Agent"] = REQUESTS_USER_AGENT
        self.max_redirects = 3

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Send the request with the configured timeout unless one is given, with no transaction open."""
        end_reads()
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def http_session() -> TimeoutSession:
    """A session for talking to platforms (close it: `with http_session() as s`)."""
    return TimeoutSession(settings.timeout())


def to_registration(row: LtiRegistration) -> Registration:
    """The PyLTI1p3 view of a stored registration, with the tool's decrypted private key."""
    reg = Registration()
    reg.set_issuer(row.issuer).set_client_id(row.client_id).set_auth_login_url(row.auth_login_url)
    reg.set_auth_token_url(row.auth_token_url).set_key_set_url(row.key_set_url)
    reg.set_tool_private_key(decrypt(row.tool_private_key)).set_tool_public_key(row.tool_public_key)
    if row.auth_audience:
        reg.set_auth_audience(row.auth_audience)
    return reg


class ToolConf(ToolConfAbstract):  # type: ignore[type-arg]
    """Registrations from the database; an issuer may have several client ids (the library's modern mode)."""

    def check_iss_has_one_client(self, iss: str) -> bool:
        """Never: always look registrations up by issuer *and* client id."""
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        """Always (see check_iss_has_one_client)."""
        return True

    def find_row(self, iss: str, client_id: str | None) -> LtiRegistration | None:
        """The stored registration; without a client id, the issuer's only one."""
        query = select(LtiRegistration).where(LtiRegistration.issuer == iss)
        if client_id:
            return db.session.scalar(query.where(LtiRegistration.client_id == client_id))
        rows = db.session.scalars(query.limit(2)).all()
        return rows[0] if len(rows) == 1 else None

    def find_registration_by_issuer(self, iss: str, *args: Any, **kwargs: Any) -> Registration | None:
        """The issuer's registration when it has exactly one."""
        row = self.find_row(iss, None)
        return to_registration(row) if row else None

    def find_registration_by_params(
        self, iss: str, client_id: str, *args: Any, **kwargs: Any
    ) -> Registration | None:
        """The registration for (issuer, client id)."""
        row = self.find_row(iss, client_id)
        return to_registration(row) if row else None

    def find_deployment(self, iss: str, deployment_id: str) -> Deployment | None:
        """Unused in many-clients mode; kept for the abstract interface."""
        return self.find_deployment_by_params(iss, deployment_id, None)  # type: ignore[arg-type]

    def find_deployment_by_params(
        self, iss: str, deployment_id: str, client_id: str, *args: Any, **kwargs: Any
    ) -> Deployment | None:
        """The deployment, if registered for this issuer and client."""
        row = find_deployment_row(iss, client_id, deployment_id)
        return Deployment().set_deployment_id(row.deployment_id) if row else None

    def get_jwks(self, iss: str | None = None, client_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """The tool's public keys, one per registration (platforms check our client assertions with them)."""
        rows = db.session.scalars(select(LtiRegistration).order_by(LtiRegistration.id))
        return {"keys": [Registration.get_jwk(row.tool_public_key) for row in rows]}


def find_deployment_row(iss: str, client_id: str | None, deployment_id: str) -> LtiDeployment | None:
    """The stored deployment for (issuer, client id, deployment id)."""
    reg = ToolConf().find_row(iss, client_id)
    if reg is None:
        return None
    return db.session.scalar(
        select(LtiDeployment).where(
            LtiDeployment.registration_id == reg.id, LtiDeployment.deployment_id == deployment_id
        )
    )


class DbLaunchDataStorage(LaunchDataStorage[Any]):
    """Nonces, OIDC state and launch data in the database, keyed by a per-browser `lti1p3-session-id` cookie.

    Why not the Flask session: the launch is a cross-site POST from the platform, which a SameSite=Lax session
    cookie does not accompany; and several web processes must see the same state. Nonces are single use:
    checking one consumes it, so a replayed id_token is refused.
    """

    def can_set_keys_expiration(self) -> bool:
        """Keys expire (launch data after a day, state after the OIDC step)."""
        return True

    def get_value(self, key: str) -> Any:
        """The stored value, or None when absent or expired."""
        row = db.session.get(LtiLaunchData, self._prepare_key(key))
        if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
            return None
        return row.value

    def set_value(self, key: str, value: Any, exp: int | None = None) -> None:
        """Store `value` for `exp` seconds (default: a day)."""
        now = utcnow()
        db.session.execute(
            delete(LtiLaunchData).where(LtiLaunchData.expires_at <= now)
        )  # keep the table small
        row = db.session.get(LtiLaunchData, self._prepare_key(key)) or LtiLaunchData(
            key=self._prepare_key(key)
        )
        row.value, row.expires_at = value, now + timedelta(seconds=exp or 86400)
        db.session.add(row)
        db.session.commit()

    def check_value(self, key: str) -> bool:
        """Whether `key` is stored; a nonce is deleted by the check (single use)."""
        row = db.session.get(LtiLaunchData, self._prepare_key(key))
        if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
            return False
        if key.startswith("lti1p3-nonce-"):
            db.session.delete(row)
            db.session.commit()
        return True


def new_key_pair() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh 2048-bit RSA key for signing client assertions."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def add_registration(
    *,
    issuer: str,
    client_id: str,
    key_set_url: str,
    auth_login_url: str,
    token_url: str,
    deployment_id: str,
    course_code: str,
    auth_audience: str | None = None,
) -> LtiRegistration:
    """Register a platform (or add a deployment to a known one) whose launches land in `course_code`."""
    for label, url in (
        ("key set URL", key_set_url),
        ("auth login URL", auth_login_url),
        ("token URL", token_url),
    ):
        if not url.startswith(("https://", "http://")):
            raise ServiceError(f"the {label} must be an http(s) URL, not {url!r}", code="bad_url")
    course = course_with_code(course_code)
    if course is None:
        raise NotFound(f"no course {course_code!r}")
    row = db.session.scalar(
        select(LtiRegistration).where(
            LtiRegistration.issuer == issuer, LtiRegistration.client_id == client_id
        )
    )
    if row is None:
        private, public = new_key_pair()
        row = LtiRegistration(
            issuer=issuer, client_id=client_id, tool_private_key=encrypt(private), tool_public_key=public
        )
        db.session.add(row)
    row.key_set_url, row.auth_login_url, row.auth_token_url = key_set_url, auth_login_url, token_url
    row.auth_audience = auth_audience
    deployment = next((d for d in row.deployments if d.deployment_id == deployment_id), None)
    if deployment is None:
        row.deployments.append(LtiDeployment(deployment_id=deployment_id, course=course))
    else:
        deployment.course = course
    db.session.commit()
    return row


def list_registrations() -> list[dict[str, Any]]:
    """Every registration with its deployments (no keys)."""
    out = []
    for row in db.session.scalars(select(LtiRegistration).order_by(LtiRegistration.id)):
        out.append(
            {
                "id": row.id,
                "issuer": row.issuer,
                "client_id": row.client_id,
                "key_set_url": row.key_set_url,
                "auth_login_url": row.auth_login_url,
                "token_url": row.auth_token_url,
                "deployments": {d.deployment_id: d.course.code for d in row.deployments},
            }
        )
    return out


def remove_registration(issuer: str, client_id: str) -> None:
    """Forget a platform: its deployments, identities and line items go with it."""
    row = db.session.scalar(
        select(LtiRegistration).where(
            LtiRegistration.issuer == issuer, LtiRegistration.client_id == client_id
        )
    )
    if row is None:
        raise NotFound(f"no LTI registration for issuer {issuer!r} and client id {client_id!r}")
    db.session.delete(row)
    db.session.commit()
