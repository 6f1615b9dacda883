"""Who is asking: presented credentials, the identity they prove, and auth results."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PresentedCredentials:
    """A secret taken from a request, with where it came from.

    ``source`` is one of ``basic``, ``private-token``, ``job-token``, ``bearer``.
    """

    secret: str
    source: str
    username: str | None = None


@dataclass(frozen=True)
class Identity:
    """The caller, as authorization sees it.

    ``kind`` is ``anonymous``, ``personal_token``, ``deploy_token``, ``job_token``,
    ``session`` or ``trusted_publisher``.  A deploy token has no user and is bound to
    ``project_id`` or ``group_id``; a job token acts for its user on ``project_id`` only;
    a trusted publisher has no user and uploads to and reads ``project_ids`` only.
    """

    kind: str
    name: str
    user_id: int | None = None
    is_admin: bool = False
    scopes: frozenset[str] = field(default_factory=frozenset)
    project_id: int | None = None
    group_id: int | None = None
    project_ids: frozenset[int] = field(default_factory=frozenset)
    # When the credential stops being valid; identities are cached until then at most.
    expires_at: datetime | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Identity(kind="anonymous", name="anonymous")


@dataclass(frozen=True)
class AuthResult:
    """What an ``authenticate`` hook answers for credentials it recognises.

    ``identified_by`` names the request headers, besides the presented credentials, that
    the identity was decided from (lower case): empty when the credentials alone decided
    it, None when the plugin did not say (``app/hookspecs.py``).
    """

    identity: Identity | None
    reason: str | None = None
    identified_by: frozenset[str] | None = None

    @classmethod
    def ok(cls, identity: Identity, identified_by: Iterable[str] | None = None) -> AuthResult:
        if isinstance(identified_by, str):  # one header name, not its letters
            identified_by = (identified_by,)
        headers = None if identified_by is None else frozenset(h.lower() for h in identified_by)
        return cls(identity=identity, identified_by=headers)

    @classmethod
    def rejected(cls, reason: str) -> AuthResult:
        return cls(identity=None, reason=reason)


@dataclass(frozen=True)
class SignInChoice:
    """A way to sign in that a plugin offers on the sign-in page (``sign_in_choices``):
    a button labelled ``label`` that leads to ``url``.  ``replaces_password`` hides the
    password form and refuses password sign-in."""

    label: str
    url: str
    replaces_password: bool = False
