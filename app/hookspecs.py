"""Every hook a Packyard plugin can implement. The docstrings are the contract.

Built-in plugins in ``plugins/`` use exactly these hooks, the way a third party does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from flask import Blueprint
    from sqlalchemy.orm import Session

    from app.domain.access import Access
    from app.domain.identity import AuthResult, PresentedCredentials, SignInChoice
    from app.domain.sign_in import SessionStamp
    from app.domain.storage import StorageBackend
    from app.models import Project

hookspec = pluggy.HookspecMarker("packyard")
hookimpl = pluggy.HookimplMarker("packyard")


@hookspec(firstresult=True)
def authenticate(
    credentials: PresentedCredentials | None, session: Session, signed_in: SessionStamp | None
) -> AuthResult | None:
    """Check the credentials presented with a request.

    ``credentials`` is None when the request carries none.  Return None when they
    are not of your kind (the next plugin is tried), ``AuthResult.rejected(reason)``
    when they are yours but wrong, expired or revoked, and ``AuthResult.ok(identity,
    identified_by=...)`` otherwise.  The first non-None answer wins; credentials nobody
    claims are refused with 401.  Every refusal answers the same ``401 Unauthorized``,
    so a caller cannot tell a revoked or expired secret from a wrong one: ``reason`` is
    only logged.  Plugins that call the network should use
    ``@hookimpl(trylast=True)``.  Use ``session`` for database lookups; do not commit.

    ``signed_in`` is the sign-in that a browser session presents (a ``SessionStamp``:
    user id and session version) on the requests a browser session may authenticate:
    the web pages.  It is None everywhere else (the REST API and the PyPI endpoints take
    tokens only) and for a browser that has not signed in.  Its cookie is signed, but
    the stamp may be stale (the user signed out everywhere, or changed password).

    ``identified_by`` says what decided the identity besides ``credentials``: the names
    of the request headers you read for it, each registered with
    ``register_credential_headers``, or ``()`` when ``credentials`` alone decided it
    (or nothing did, for an anonymous caller).  Index pages are answered from a response
    cache keyed on the presented credentials and the registered headers, before any
    plugin runs; a page is cached only when its caller's answer names nothing outside
    that key.  Leaving ``identified_by`` out (None) keeps pages made for your callers out
    of the cache (and your answer is not reused for later requests with the same
    credentials), but a caller you identify by a header nobody registered may still be
    answered with the page cached for the same request without it, an anonymous
    caller's say: register what you read.  Never name less than you read: a header left
    out lets one caller's cached page (or identity) answer another caller who differs
    only in that header.
    """


@hookspec
def register_credential_headers(register: Callable[[str], None]) -> None:
    """Name the request headers your ``authenticate`` reads to identify a caller:
    ``register("X-Api-Key")``.

    Called once, when the app is created.  The presented credentials (``Authorization``,
    ``PRIVATE-TOKEN``, ``JOB-TOKEN``) are always part of the response cache's key; the
    headers registered here are added to it, so that a caller your plugin identified by
    one of them is answered only with pages made for the same value.  Cookies are not
    headers you can register: requests that carry one are never answered from the cache.
    A name that is not a valid header name makes the app refuse to start.
    """


@hookspec
def register_storage_backends(
    register: Callable[[str, Callable[[str], StorageBackend]], None],
) -> None:
    """Register storage backends by URL scheme: ``register("s3", factory)``.

    ``factory(url)`` returns a ``StorageBackend`` for ``PACKYARD_STORAGE_URL`` (or for
    the ``--to`` URL of ``packyard storage migrate``); ``app/domain/storage.py`` documents
    the interface (``writer`` to stream files in, a seekable ``open``, the optional
    abilities). A scheme registered twice is an error naming both plugins.
    """


@hookspec
def register_blueprints(register: Callable[[Blueprint], None]) -> None:
    """Add HTTP routes: ``register(blueprint)``.

    Called once per app, after Packyard's own blueprints; do not reuse their paths.
    ``packyard.InvalidInput``, ``NotFound`` and ``Forbidden`` raised by a view answer
    the contract's JSON (``{"message": ...}``) with 400, 404 and 403.  These routes take
    tokens, like the REST API: the session cookie does not authenticate them and their
    POSTs are not CSRF-checked.  Views find the caller with
    ``packyard.current_identity()`` and a project the caller may act on with
    ``packyard.project_for(ref, permission)``.
    """


@hookspec
def project_page_sections(project: Project, access: Access, session: Session) -> str | None:
    """A section for the project's web page, below its packages, or None for nothing.

    The string is inserted as HTML, unescaped: escape whatever you put in it (render it
    with ``flask.render_template_string``, which escapes as the pages do).

    ``access`` is the visitor's (``access.manage`` for maintainers); show only what they
    may see.  Sections appear in plugin registration order.
    """


@hookspec
def sign_in_choices(next_url: str) -> SignInChoice | None:
    """Another way to sign in to the web pages, offered on the sign-in page: a
    ``SignInChoice(label, url)``, or None.  ``next_url`` is where the visitor goes once
    signed in (a local path).  The plugin's own routes (``register_blueprints``) do the
    rest and start the session with ``packyard.start_browser_session(user)``.
    """


@hookspec
def on_file_processed(file_id: int, state: str) -> None:
    """Called by the worker after a package file reached ``default`` or ``error``.

    Runs after the database commit, at least once per file (a redelivered task calls it
    again).  Exceptions are logged and never fail the task.
    """
