"""CI job tokens: short-lived, one project, username ``gitlab-ci-token``."""

from sqlalchemy.orm import Session

from app.domain.tokens import JOB_PREFIX, find_live_token
from app.models import JobToken, User
from packyard import AuthResult, Identity, PresentedCredentials, hookimpl


@hookimpl
def authenticate(credentials: PresentedCredentials | None, session: Session) -> AuthResult | None:
    if credentials is None or not credentials.secret.startswith(JOB_PREFIX):
        return None
    token, reason = find_live_token(session, JobToken, credentials.secret)
    if token is None:
        return AuthResult.rejected(reason or "invalid token")
    user = session.get(User, token.user_id)
    if user is None or user.is_blocked:
        return AuthResult.rejected("user blocked")
    return AuthResult.ok(
        Identity(
            expires_at=token.expires_at,
            kind="job_token",
            name="gitlab-ci-token",
            user_id=token.user_id,
            # Acts with the permissions of the user the job runs for, as GitLab's does.
            is_admin=user.is_admin,
            project_id=token.project_id,
        ),
        identified_by=(),  # the credentials alone
    )
