"""A small LTI 1.3 platform for the tests: a real HTTP server on loopback with its own RSA key pair.

It serves its JWKS, answers OIDC authorization requests with an auto-submitting form carrying a signed
id_token (as a browser would receive it), issues access tokens for client-credentials grants whose JWT client
assertion verifies against the tool's JWKS, and records the AGS scores posted to its line item. Its gradebook
keeps, per line item and user, the score with the latest timestamp, as AGS requires of a platform: an update
stamped before the one on record is ignored.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient
from jwt.algorithms import RSAAlgorithm

from tests.support.lms_helpers import LoopbackServer, Received

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS = "https://purl.imsglobal.org/spec/lti-ags/"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"


@dataclass
class PlatformUser:
    """Someone who can launch the tool from the platform."""

    sub: str
    email: str
    name: str
    roles: list[str]


@dataclass
class Score:
    """A score the platform received, with the access token it came with."""

    path: str
    content_type: str
    token: str
    body: dict[str, Any]


@dataclass
class Settings:
    """What the platform puts into launches and how it behaves."""

    client_id: str = "grader-tool"
    deployment_id: str = "deployment-1"
    launch_url: str = "http://localhost/lti/launch"
    custom: dict[str, str] = field(default_factory=lambda: {"assignment": "autograd"})
    fail_scores: int = 0  # answer 503 to this many score posts first


def rsa_pair() -> tuple[Any, dict[str, Any]]:
    """(private key, public JWK) of a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return key, public


class Platform(LoopbackServer):
    """The platform. Set `tool_jwks` (the tool's /lti/jwks) before the tool asks for a token."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.key, jwk = rsa_pair()
        self.kid = "platform-key-1"
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}
        self.users: dict[str, PlatformUser] = {}
        self.tool_jwks: dict[str, Any] = {"keys": []}
        self.tokens: dict[str, list[str]] = {}
        self.assertion_ids: set[str] = set()
        self.scores: list[Score] = []
        self.gradebook: dict[tuple[str, str], dict[str, Any]] = {}  # (line item path, userId) -> score
        self.ignored: list[dict[str, Any]] = []  # posted, but stamped before the score on record
        self.refused: list[str] = []

    # --- addresses ---------------------------------------------------------------------------------------
    @property
    def issuer(self) -> str:
        """The platform's issuer (its base URL)."""
        return self.base_url

    @property
    def lineitem(self) -> str:
        """The line item launches advertise."""
        return self.base_url + "/lineitems/7/lineitem"

    def registration_args(self, course: str = "DEMO101") -> list[str]:
        """`grader lms lti add` arguments registering this platform."""
        return ["lti", "add", "--issuer", self.issuer, "--client-id", self.settings.client_id,
                "--key-set-url", self.base_url + "/jwks", "--auth-login-url", self.base_url + "/auth",
                "--token-url", self.base_url + "/token", "--deployment-id", self.settings.deployment_id,
                "--course", course]

    def login_initiation(self, login_hint: str) -> dict[str, str]:
        """What the platform sends to the tool's login URL to start a launch."""
        return {"iss": self.issuer, "login_hint": login_hint, "target_link_uri": self.settings.launch_url,
                "lti_message_hint": "resource-link-1", "client_id": self.settings.client_id,
                "lti_deployment_id": self.settings.deployment_id}

    # --- HTTP ----------------------------------------------------------------------------------------------
    def handle(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        """Route a request."""
        path = urlsplit(request.path).path
        if request.method == "GET" and path == "/jwks":
            return _json(200, self.jwks)
        if request.method == "GET" and path == "/auth":
            return self._authorize(parse_qs(urlsplit(request.path).query))
        if request.method == "POST" and path == "/token":
            return self._token(request)
        if request.method == "POST" and path == "/lineitems/7/lineitem/scores":
            return self._score(request)
        return _json(404, {"error": "not found"})

    def _refuse(self, status: int, reason: str) -> tuple[int, dict[str, str], bytes]:
        self.refused.append(reason)
        return _json(status, {"error": reason})

    def _authorize(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        params = {k: v[0] for k, v in query.items()}
        expected = {"scope": "openid", "response_type": "id_token", "response_mode": "form_post",
                    "prompt": "none", "client_id": self.settings.client_id,
                    "redirect_uri": self.settings.launch_url}
        for key, value in expected.items():
            if params.get(key) != value:
                return self._refuse(400, f"bad {key}: {params.get(key)!r}")
        user = self.users.get(params.get("login_hint", ""))
        if user is None or not params.get("nonce") or not params.get("state"):
            return self._refuse(400, "unknown login_hint or missing nonce/state")
        token = self.id_token(user, params["nonce"])
        form = (f'<form id="launch" method="post" action="{params["redirect_uri"]}">'
                f'<input type="hidden" name="id_token" value="{token}">'
                f'<input type="hidden" name="state" value="{params["state"]}"></form>'
                '<script>document.getElementById("launch").submit()</script>')
        return 200, {"Content-Type": "text/html"}, form.encode()

    def id_token(self, user: PlatformUser, nonce: str, key: Any = None, **overrides: Any) -> str:
        """A signed LtiResourceLinkRequest for `user` (another `key` makes a forgery)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.settings.client_id, "sub": user.sub, "iat": now, "exp": now + 300,
            "nonce": nonce, "email": user.email, "name": user.name,
            CLAIM + "message_type": "LtiResourceLinkRequest",
            CLAIM + "version": "1.3.0",
            CLAIM + "deployment_id": self.settings.deployment_id,
            CLAIM + "target_link_uri": self.settings.launch_url,
            CLAIM + "resource_link": {"id": "resource-link-1", "title": "Autograd"},
            CLAIM + "context": {"id": "context-1", "label": "DEMO101", "title": "Deep learning"},
            CLAIM + "roles": user.roles,
            CLAIM + "custom": self.settings.custom,
            AGS + "claim/endpoint": {
                "scope": [AGS + "scope/lineitem", AGS + "scope/result.readonly", AGS + "scope/score"],
                "lineitem": self.lineitem,
                "lineitems": self.base_url + "/lineitems",
            },
        }
        claims.update(overrides)
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})

    def _token(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return self._refuse(400, "unsupported_grant_type")
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return self._refuse(400, "bad client_assertion_type")
        assertion = form.get("client_assertion", "")
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
            jwk = next(k for k in self.tool_jwks["keys"] if k.get("kid") == kid)
            claims = jwt.decode(assertion, RSAAlgorithm.from_jwk(json.dumps(jwk)), algorithms=["RS256"],
                                audience=self.base_url + "/token", options={"require": ["exp", "iat", "jti"]})
        except (StopIteration, jwt.InvalidTokenError) as exc:
            return self._refuse(401, f"invalid_client: {exc}")
        if claims["iss"] != self.settings.client_id or claims["sub"] != self.settings.client_id:
            return self._refuse(401, "invalid_client: iss/sub")
        if claims["jti"] in self.assertion_ids:
            return self._refuse(401, "invalid_client: assertion replayed")
        self.assertion_ids.add(claims["jti"])
        token = secrets.token_urlsafe(16)
        self.tokens[token] = form.get("scope", "").split()
        return _json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                           "scope": form.get("scope", "")})

    def _score(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if AGS + "scope/score" not in self.tokens.get(token, []):
            return self._refuse(401, "no token with the score scope")
        if self.settings.fail_scores > 0:
            self.settings.fail_scores -= 1
            return self._refuse(503, "platform busy")
        body = json.loads(request.body)
        self.scores.append(Score(request.path, request.headers.get("content-type", ""), token, body))
        # AGS: "the platform MUST NOT update a result if the last timestamp on record is later than the incoming
        # score update" (it may keep it for an audit trail, as `ignored` does).
        key = (request.path, body["userId"])
        kept = self.gradebook.get(key)
        if kept is not None and datetime.fromisoformat(kept["timestamp"]) > datetime.fromisoformat(body["timestamp"]):
            self.ignored.append(body)
        else:
            self.gradebook[key] = body
        return 200, {}, b""


def _json(status: int, doc: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(doc).encode()


class FormReader(HTMLParser):
    """Reads the auto-submitting form a platform returns: its action and hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Collect the form's action and inputs."""
        values = dict(attrs)
        if tag == "form":
            self.action = values.get("action") or ""
        if tag == "input" and values.get("name"):
            self.fields[str(values["name"])] = values.get("value") or ""


def oidc_launch(client: FlaskClient, platform: Platform, login_hint: str) -> tuple[object, dict[str, str]]:
    """Play the browser: initiate login at the tool, follow it to the platform, post the form back."""
    start = client.post("/lti/login", data=platform.login_initiation(login_hint))
    assert start.status_code == 302, start.data
    with requests.Session() as browser:
        page = browser.get(start.headers["Location"], timeout=5)
    assert page.status_code == 200, page.text
    form = FormReader()
    form.feed(page.text)
    assert form.action == platform.settings.launch_url
    return client.post("/lti/launch", data=form.fields), form.fields
