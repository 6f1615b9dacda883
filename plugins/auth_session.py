"""Browser sessions: the sign-in a signed-in browser presents on the web pages.

The host hands the sign-in over (``signed_in``) only on the requests a browser session may
authenticate; this plugin checks that it is still current.  A request that presents a
token is left to the token plugins.
"""

from sqlalchemy.orm import Session

from app.domain.sign_in import session_user
from packyard import AuthResult, Identity, PresentedCredentials, SessionStamp, hookimpl


@hookimpl
def authenticate(
    credentials: PresentedCredentials | None, session: Session, signed_in: SessionStamp | None
) -> AuthResult | None:
    if credentials is not None or signed_in is None:
        return None
    user = session_user(session, signed_in)
    if user is None:
        return None  # signed out or stale: the visitor is anonymous
    # Requests with a cookie are never answered from the response cache: no identified_by.
    return AuthResult.ok(
        Identity(kind="session", name=user.username, user_id=user.id, is_admin=user.is_admin)
    )
