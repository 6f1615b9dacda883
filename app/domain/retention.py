"""Retention policies: which releases of a project the workers remove.

A policy has two rules, each set on a project or inherited from its nearest group that
sets it: ``retention_keep_n`` keeps the newest N releases of each package name (by PEP 440
version), and ``retention_prerelease_days`` removes pre-releases and dev releases created
more than D days ago.  The newest release of a name and releases marked ``protected``
are never removed, nor a release with a file still processing.

The workers remove what ``preview`` lists (``workers.tasks.retention``) through
``delete_package``: each removal is audited (actor ``retention policy``), announced to
webhooks, and its stored files are queued for removal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from packaging.version import InvalidVersion, Version
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.domain.namespaces import group_chain
from app.domain.packages import package_status
from app.domain.tokens import as_utc
from app.models import Package, Project
from app.models.base import utcnow

ACTOR = "retention policy"


@dataclass(frozen=True)
class Policy:
    keep_n: int | None = None
    prerelease_days: int | None = None

    @property
    def empty(self) -> bool:
        return self.keep_n is None and self.prerelease_days is None


@dataclass(frozen=True)
class Removal:
    package: Package
    reason: str


def effective_policy(session: Session, project: Project) -> Policy:
    """The project's own settings, each else the nearest group's that sets it."""
    chain = [project, *group_chain(session, project.group)]
    keep_n = next((t.retention_keep_n for t in chain if t.retention_keep_n is not None), None)
    days = next(
        (t.retention_prerelease_days for t in chain if t.retention_prerelease_days is not None),
        None,
    )
    return Policy(keep_n, days)


def preview(session: Session, project: Project, now: datetime | None = None) -> list[Removal]:
    """What the project's policy would remove now, oldest version first per name."""
    policy = effective_policy(session, project)
    if policy.empty:
        return []
    packages = session.execute(
        select(Package).where(Package.project_id == project.id)
        .options(selectinload(Package.files), selectinload(Package.project))
    ).scalars()  # fmt: skip
    by_name: dict[str, list[Package]] = defaultdict(list)
    for package in packages:
        by_name[package.normalized_name].append(package)
    cutoff = (now or utcnow()) - timedelta(days=policy.prerelease_days or 0)
    return [
        removal for name in sorted(by_name) for removal in _removals(by_name[name], policy, cutoff)
    ]


def _removals(releases: list[Package], policy: Policy, cutoff: datetime) -> Iterator[Removal]:
    newest_first = sorted(releases, key=_version_key, reverse=True)
    for rank, package in enumerate(newest_first):
        if rank == 0 or package.protected or package_status(package) == "processing":
            continue
        if policy.keep_n is not None and rank >= policy.keep_n:
            yield Removal(package, f"beyond the newest {policy.keep_n}")
        elif (
            policy.prerelease_days is not None
            and _is_pre(package)
            and (as_utc(package.created_at) < cutoff)
        ):
            yield Removal(package, f"a pre-release older than {policy.prerelease_days} days")


def _version_key(package: Package) -> tuple[int, Version | str, int]:
    try:
        return (1, Version(package.version), package.id)
    except InvalidVersion:  # never stored, but never fatal: such versions sort first
        return (0, package.version, package.id)


def _is_pre(package: Package) -> bool:
    try:
        version = Version(package.version)
    except InvalidVersion:
        return False
    return version.is_prerelease or version.is_devrelease


def project_ids(session: Session) -> list[int]:
    """Projects that hold packages: the ones a policy may apply to."""
    query = select(Package.project_id).distinct().order_by(Package.project_id)
    return list(session.execute(query).scalars())
