"""Secrets at rest: Fernet encryption with a key derived from SECRET_KEY, and Standard Webhooks secrets.

Why encrypt rather than hash: an HMAC can only be checked or produced with the raw secret, so the service must
be able to recover it. Changing SECRET_KEY makes stored secrets unreadable: rotate every integration then.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

SECRET_PREFIX = "whsec_"  # noqa: S105  (a format prefix, not a secret)
_INFO = b"grader lms secrets v1"  # domain separation: this key is used for nothing else


class SecretUnreadable(RuntimeError):
    """A stored secret cannot be decrypted (SECRET_KEY changed since it was stored)."""


def _fernet(secret_key: str | None = None) -> Fernet:
    key_material = (secret_key or current_app.config["SECRET_KEY"]).encode()
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key_material)
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(plain: str, secret_key: str | None = None) -> str:
    """Encrypt `plain` for storage."""
    return _fernet(secret_key).encrypt(plain.encode()).decode()


def decrypt(token: str, secret_key: str | None = None) -> str:
    """Decrypt a value made by `encrypt` (SecretUnreadable when the key changed)."""
    try:
        return _fernet(secret_key).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "a stored LMS secret cannot be decrypted: was SECRET_KEY changed? "
            "Rotate the integration's secrets"
        ) from None


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
