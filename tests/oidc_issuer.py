"""A local OpenID Connect issuer for the trusted publishing tests, on a loopback port.

It serves a discovery document and a JWKS of keys generated here, signs identity tokens
with them, and answers GitHub Actions' token request (``ACTIONS_ID_TOKEN_REQUEST_URL``,
``&audience=...``, ``Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN``) the way the
runner does, so a real client can run the whole exchange.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

GITLAB_CLAIMS = {
    "sub": "project_path:team/lib:ref_type:branch:ref:main",
    "project_path": "team/lib",
    "ref": "main",
    "ref_type": "branch",
    "environment": "production",
}
GITHUB_CLAIMS = {
    "sub": "repo:octo/lib:environment:pypi",
    "repository": "octo/lib",
    "workflow_ref": "octo/lib/.github/workflows/release.yml@refs/heads/main",
    "environment": "pypi",
}


class LocalIssuer:
    def __init__(self, audience: str = "packyard") -> None:
        self.audience = audience
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: set[str] = set()
        self.jwks_requests = 0
        # What the GitHub-style token endpoint signs, and the bearer it wants.
        self.request_token = secrets.token_urlsafe(16)
        self.actions_claims: dict[str, Any] = dict(GITHUB_CLAIMS)
        self.add_key("key-1")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def add_key(self, kid: str, *, publish: bool = True) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.add(kid)

    @property
    def actions_request_url(self) -> str:
        return f"{self.url}/_apis/idtoken?api-version=2.0"

    def sign(self, claims: dict[str, Any], *, kid: str = "key-1", **overrides: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            **claims,
            **overrides,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in sorted(self.published):
            jwk = RSAAlgorithm.to_jwk(self.keys[kid].public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._json({"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"})
                elif url.path == "/jwks":
                    issuer.jwks_requests += 1
                    self._json(issuer.jwks())
                elif url.path == "/_apis/idtoken":
                    self._actions_token(parse_qs(url.query))
                else:
                    self._json({"message": "not found"}, 404)

            def _actions_token(self, query: dict[str, list[str]]) -> None:
                expected = f"bearer {issuer.request_token}"
                if self.headers.get("Authorization", "").lower() != expected.lower():
                    self._json({"message": "bad request token"}, 401)
                    return
                audience = query.get("audience", [issuer.audience])[0]
                self._json({"value": issuer.sign(issuer.actions_claims, aud=audience)})

            def _json(self, body: Any, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler
