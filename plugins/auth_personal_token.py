"""Personal access tokens: act with their user's role, within scopes api / read_api."""

from sqlalchemy.orm import Session, joinedload

from app.domain.tokens import PAT_PREFIX, find_live_token
from app.models import PersonalAccessToken
from packyard import AuthResult, Identity, PresentedCredentials, hookimpl


@hookimpl
def authenticate(credentials: PresentedCredentials | None, session: Session) -> AuthResult | None:
    if credentials is None or not credentials.secret.startswith(PAT_PREFIX):
        return None
    if credentials.source == "job-token":
        return AuthResult.rejected("a personal access token is not a job token")
    token, reason = find_live_token(
        session, PersonalAccessToken, credentials.secret, joinedload(PersonalAccessToken.user)
    )
    if token is None:
        return AuthResult.rejected(reason or "invalid token")
    user = token.user
    if user.is_blocked:
        return AuthResult.rejected("user blocked")
    return AuthResult.ok(
        Identity(
            expires_at=token.expires_at,
            kind="personal_token",
            name=user.username,
            user_id=user.id,
            is_admin=user.is_admin,
            scopes=frozenset(token.scope_list),
        ),
        identified_by=(),  # the credentials alone
    )
