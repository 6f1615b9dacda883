"""Deploy tokens: bound to one project or group, scopes read/write_package_registry."""

from sqlalchemy.orm import Session

from app.domain.tokens import DEPLOY_PREFIX, find_live_token
from app.models import DeployToken
from packyard import AuthResult, Identity, PresentedCredentials, hookimpl


@hookimpl
def authenticate(credentials: PresentedCredentials | None, session: Session) -> AuthResult | None:
    if credentials is None or not credentials.secret.startswith(DEPLOY_PREFIX):
        return None
    token, reason = find_live_token(session, DeployToken, credentials.secret)
    if token is None:
        return AuthResult.rejected(reason or "invalid token")
    return AuthResult.ok(
        Identity(
            expires_at=token.expires_at,
            kind="deploy_token",
            name=token.username,
            scopes=frozenset(token.scope_list),
            project_id=token.project_id,
            group_id=token.group_id,
        ),
        identified_by=(),  # the credentials alone
    )
