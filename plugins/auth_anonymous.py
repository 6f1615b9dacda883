"""Anonymous access: a request without credentials may read public projects."""

from sqlalchemy.orm import Session

from app.domain.identity import ANONYMOUS
from packyard import AuthResult, PresentedCredentials, hookimpl


@hookimpl(trylast=True)
def authenticate(credentials: PresentedCredentials | None, session: Session) -> AuthResult | None:
    return AuthResult.ok(ANONYMOUS, identified_by=()) if credentials is None else None
