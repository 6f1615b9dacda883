"""Authorization: who may see, read, write and delete what (contract section 4).

The table ``SCOPE_GRANTS`` says which credential kind and scope grant which
permission; roles come from memberships on a project and its ancestor groups.
What a project or group shows without a role is its *effective* visibility: the least
visible along it and its ancestor groups, so rows made before that rule was enforced
(a public project in a private group) show no more than their group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, inspect, or_, select, true
from sqlalchemy.orm import Session

from app.domain.errors import Forbidden, NotFound, Unauthenticated
from app.domain.identity import Identity
from app.models import Group, Membership, Project
from app.models.namespaces import VISIBILITIES

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50
ACCESS_LEVELS = {GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER}
ROLE_NAMES = {GUEST: "Guest", REPORTER: "Reporter", DEVELOPER: "Developer",
              MAINTAINER: "Maintainer", OWNER: "Owner"}  # fmt: skip

READ, WRITE = "read", "write"
TRUSTED_PUBLISHER = "trusted_publisher"
ALL = frozenset({READ, WRITE})
# credential kind -> scope -> permissions that scope can grant (roles still apply).
SCOPE_GRANTS: dict[str, dict[str, frozenset[str]]] = {
    "personal_token": {"api": ALL, "read_api": frozenset({READ})},
    "deploy_token": {
        "read_package_registry": frozenset({READ}),
        "write_package_registry": frozenset({WRITE}),
    },
}
PAT_SCOPES = frozenset(SCOPE_GRANTS["personal_token"])
DEPLOY_TOKEN_SCOPES = frozenset(SCOPE_GRANTS["deploy_token"])


def granted(identity: Identity) -> frozenset[str]:
    """The permissions an identity's credential allows, before roles."""
    if identity.kind in ("session", "job_token"):
        return ALL
    if identity.kind == "anonymous":
        return frozenset({READ})
    grants = SCOPE_GRANTS.get(identity.kind, {})
    return frozenset().union(*(grants.get(scope, frozenset()) for scope in identity.scopes))


@dataclass(frozen=True)
class Access:
    visible: bool = False
    read: bool = False
    write: bool = False
    delete: bool = False
    manage: bool = False
    role: int = 0


def visibility_rank(visibility: str) -> int:
    """private < internal < public."""
    return VISIBILITIES.index(visibility)


def least_visible(*visibilities: str) -> str:
    return min(visibilities, key=visibility_rank)


def group_chain_of(
    session: Session, group_id: int | None, full_path: str | None = None
) -> list[Group]:
    """The group and its ancestors, nearest first. A request asks for them several times
    (access, size limit, quota, webhooks): the session keeps the chain it loaded, which
    costs no query until a commit expires it. Otherwise, given the group's
    ``full_path``, one query loads them all (their paths are its prefixes: groups are
    never moved); without it, one query per group."""
    if group_id is None:
        return []
    kept: dict[int, list[Group]] = session.info.setdefault(CHAINS, {})
    chain = kept.get(group_id)
    if chain is None or not all(_loaded(session, group) for group in chain):
        chain = kept[group_id] = _load_chain(session, group_id, full_path)
    return list(chain)


CHAINS = "packyard.group_chains"  # session.info: group id -> its chain, as last loaded
GROUP_COLUMNS = frozenset(column.key for column in inspect(Group).column_attrs)


def _loaded(session: Session, group: Group) -> bool:
    """Whether the session holds ``group`` with every column as read in this transaction
    (a commit or a rollback expires them)."""
    state = inspect(group)
    return (
        group in session
        and not state.deleted
        and state.expired_attributes.isdisjoint(GROUP_COLUMNS)
    )


def _load_chain(session: Session, group_id: int, full_path: str | None) -> list[Group]:
    if full_path is not None:
        parts = full_path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        rows = session.execute(select(Group).where(Group.full_path.in_(prefixes))).scalars()
        return sorted(rows, key=lambda row: len(row.full_path), reverse=True)
    chain: list[Group] = []
    next_id: int | None = group_id
    while next_id is not None and next_id not in (seen.id for seen in chain):
        group = session.get(Group, next_id)
        if group is None:
            break
        chain.append(group)
        next_id = group.parent_id
    return chain


def _chain(
    session: Session, group_id: int | None, full_path: str | None = None
) -> list[tuple[int, str]]:
    """The group and its ancestors, nearest first, with their visibilities."""
    return [(group.id, group.visibility) for group in group_chain_of(session, group_id, full_path)]


def parent_path(full_path: str) -> str:
    """The full path of the group that holds what is at ``full_path``."""
    return full_path.rpartition("/")[0]


def group_chain_ids(session: Session, group_id: int | None) -> list[int]:
    """The group and its ancestors, nearest first."""
    return [chain_id for chain_id, _ in _chain(session, group_id)]


def effective_visibility(session: Session, target: Project | Group) -> str:
    """The least visible of ``target`` and the groups that hold it."""
    parent = target.group_id if isinstance(target, Project) else target.parent_id
    return least_visible(target.visibility, *(shown for _, shown in _chain(session, parent)))


def user_role(session: Session, user_id: int, project: Project | None, group_ids: list[int]) -> int:
    targets = [Membership.group_id.in_(group_ids)] if group_ids else []
    if project is not None:
        targets.append(Membership.project_id == project.id)
    if not targets:
        return 0
    levels = session.execute(
        select(Membership.access_level).where(Membership.user_id == user_id, or_(*targets))
    ).scalars()
    return max(levels, default=0)


def _visible_by_visibility(visibility: str, identity: Identity) -> bool:
    if visibility == "public":
        return True
    return visibility == "internal" and identity.user_id is not None


def project_access(session: Session, identity: Identity, project: Project) -> Access:
    groups = _chain(session, project.group_id, parent_path(project.full_path))
    chain = [group_id for group_id, _ in groups]
    visibility = least_visible(project.visibility, *(shown for _, shown in groups))
    if identity.kind == TRUSTED_PUBLISHER:
        return _publisher_access(identity, project.id, visibility)
    if identity.kind == "deploy_token":
        return _deploy_token_access(identity, project, chain, visibility)
    if identity.kind == "job_token" and identity.project_id != project.id:
        # A job token reaches its own project; elsewhere it only reads what is public.
        public = visibility == "public"
        return Access(visible=public, read=public)
    role = OWNER if identity.is_admin else 0
    if identity.user_id is not None and not identity.is_admin:
        role = user_role(session, identity.user_id, project, chain)
    open_to_caller = _visible_by_visibility(visibility, identity)
    perms = granted(identity)
    return Access(
        visible=open_to_caller or role >= GUEST,
        read=READ in perms and (open_to_caller or role >= REPORTER),
        write=WRITE in perms and role >= DEVELOPER,
        delete=WRITE in perms and role >= MAINTAINER,
        manage=WRITE in perms and role >= MAINTAINER,
        role=role,
    )


def readable_project_ids(session: Session, identity: Identity, group: Group) -> list[int]:
    """Ids of the projects in ``group`` and its subgroups whose packages the caller may read.

    The same rules as ``project_access(...).read``, in three queries whatever the number of
    projects: memberships apply to everything below their group's path."""
    below = group.full_path + "/"
    rows = session.execute(
        select(Project.id, Project.full_path, Project.visibility).where(
            Project.full_path.startswith(below, autoescape=True)
        )
    ).all()
    chain_paths = [*_ancestor_paths(group.full_path), group.full_path]
    holders = or_(
        Group.full_path.in_(chain_paths), Group.full_path.startswith(below, autoescape=True)
    )
    can_read = _reader(session, identity)
    return [
        project_id
        for project_id, path, visibility in _effective(session, rows, holders)
        if can_read(project_id, path, visibility)
    ]


def all_readable_project_ids(session: Session, identity: Identity) -> list[int]:
    """Ids of every project whose packages the caller may read (the web home page).

    The same rules as ``readable_project_ids``, over all projects."""
    rows = session.execute(select(Project.id, Project.full_path, Project.visibility)).all()
    can_read = _reader(session, identity)
    return [
        project_id
        for project_id, path, visibility in _effective(session, rows, true())
        if can_read(project_id, path, visibility)
    ]


def _ancestor_paths(full_path: str) -> list[str]:
    """The full paths of the groups that hold ``full_path``: ``a/b/c`` -> ``a``, ``a/b``."""
    parts = full_path.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts))]


def _effective(
    session: Session, rows: Sequence[Any], holders: ColumnElement[bool]
) -> list[tuple[int, str, str]]:
    """Project rows (id, full path, visibility) with their effective visibility, in one
    query for the ``holders`` (the groups that may hold them) whatever their number."""
    shown = dict(session.execute(select(Group.full_path, Group.visibility).where(holders)).all())
    return [
        (project_id, path, least_visible(visibility, *_known(shown, _ancestor_paths(path))))
        for project_id, path, visibility in rows
    ]


def _known(shown: dict[str, str], paths: list[str]) -> list[str]:
    return [shown[path] for path in paths if path in shown]


def _reader(session: Session, identity: Identity) -> Callable[[int, str, str], bool]:
    perms = granted(identity)
    if identity.kind == "deploy_token":
        bound_group = session.get(Group, identity.group_id) if identity.group_id else None
        bound_prefix = bound_group.full_path + "/" if bound_group else None

        def deploy_token_reads(project_id: int, path: str, visibility: str) -> bool:
            bound = project_id == identity.project_id or bool(
                bound_prefix and path.startswith(bound_prefix)
            )
            return (bound and READ in perms) or visibility == "public"

        return deploy_token_reads
    if identity.kind == TRUSTED_PUBLISHER:
        return lambda project_id, _path, visibility: (
            _publisher_access(identity, project_id, visibility).read
        )
    project_roles: dict[int, int] = {}
    group_roles: list[tuple[str, int]] = []
    if identity.user_id is not None and not identity.is_admin:
        memberships = session.execute(
            select(Membership.project_id, Group.full_path, Membership.access_level)
            .outerjoin(Group, Group.id == Membership.group_id)
            .where(Membership.user_id == identity.user_id)
        ).all()
        for project_id, group_path, level in memberships:
            if project_id is not None:
                project_roles[project_id] = level
            else:
                group_roles.append((group_path + "/", level))

    def reads(project_id: int, path: str, visibility: str) -> bool:
        if identity.kind == "job_token" and identity.project_id != project_id:
            return visibility == "public"
        if READ not in perms:
            return False
        if identity.is_admin or _visible_by_visibility(visibility, identity):
            return True
        inherited = (level for prefix, level in group_roles if path.startswith(prefix))
        return max(project_roles.get(project_id, 0), *inherited, 0) >= REPORTER

    return reads


def _publisher_access(identity: Identity, project_id: int, visibility: str) -> Access:
    """A trusted publisher's token uploads to and reads its projects; elsewhere it reads
    what is public, like a job token."""
    bound = project_id in identity.project_ids
    public = visibility == "public"
    return Access(visible=bound or public, read=bound or public, write=bound)


def _deploy_token_access(
    identity: Identity, project: Project, chain: list[int], visibility: str
) -> Access:
    bound = identity.project_id == project.id or (
        identity.group_id is not None and identity.group_id in chain
    )
    perms = granted(identity)
    public = visibility == "public"
    return Access(
        visible=bound or public,
        read=(bound and READ in perms) or public,
        write=bound and WRITE in perms,
    )


def group_access(session: Session, identity: Identity, group: Group) -> Access:
    """Whether the caller may see a group (its index lists only readable projects)."""
    groups = _chain(session, group.id)
    chain = [group_id for group_id, _ in groups]
    visibility = least_visible(group.visibility, *(shown for _, shown in groups))
    if identity.kind == "deploy_token":
        bound = identity.group_id is not None and identity.group_id in chain
        visible = bound or visibility == "public"
        return Access(visible=visible, read=visible)
    if identity.kind in ("job_token", TRUSTED_PUBLISHER):  # bound to projects: public only
        public = visibility == "public"
        return Access(visible=public, read=public)
    if identity.is_admin:
        return Access(visible=True, read=True, write=True, delete=True, manage=True, role=OWNER)
    role = 0
    if identity.user_id is not None:
        role = user_role(session, identity.user_id, None, chain)
        if role == 0 and _member_below(session, identity.user_id, group):
            role = GUEST
    visible = _visible_by_visibility(visibility, identity) or role >= GUEST
    perms = granted(identity)
    return Access(
        visible=visible,
        read=visible,
        write=WRITE in perms and role >= DEVELOPER,
        delete=WRITE in perms and role >= MAINTAINER,
        manage=WRITE in perms and role >= MAINTAINER,
        role=role,
    )


def _member_below(session: Session, user_id: int, group: Group) -> bool:
    """GitLab shows a private group to members of anything inside it."""
    prefix = group.full_path + "/"
    project_hit = (
        select(Membership.id)
        .join(Project, Project.id == Membership.project_id)
        .where(Membership.user_id == user_id, Project.full_path.startswith(prefix, autoescape=True))
    )
    group_hit = (
        select(Membership.id)
        .join(Group, Group.id == Membership.group_id)
        .where(Membership.user_id == user_id, Group.full_path.startswith(prefix, autoescape=True))
    )
    return session.execute(project_hit.union(group_hit).limit(1)).first() is not None


def check_grant(granter_role: int, access_level: int) -> None:
    """As in GitLab, nobody grants a role above their own: only owners grant Owner."""
    if access_level <= granter_role:
        return
    if access_level == OWNER:
        raise Forbidden("403 Forbidden: only owners can grant the Owner role")
    own = ROLE_NAMES.get(granter_role, "none")
    raise Forbidden(f"403 Forbidden: you cannot grant a role above your own ({own})")


def require_visible(identity: Identity, access: Access, what: str = "Project") -> None:
    if not access.visible:
        raise _denied(identity, NotFound(f"404 {what} Not Found"))


def require(identity: Identity, access: Access, permission: str, what: str = "Project") -> None:
    """Raise the contract's error when ``access`` lacks ``permission``.

    Anonymous callers get 401 so clients retry with credentials; others get 404
    for what they cannot see and 403 for what they see but may not do.
    """
    require_visible(identity, access, what)
    if not getattr(access, permission):
        raise _denied(identity, Forbidden("403 Forbidden"))


def _denied(identity: Identity, error: Exception) -> Exception:
    if identity.is_anonymous:
        return Unauthenticated("401 Unauthorized")
    return error
