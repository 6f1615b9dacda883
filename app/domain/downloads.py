"""Download statistics of package files and releases: GitLab's ``last_downloaded_at``
and a count, kept by ``app.domain.counters`` (in memory, written in batches every
``DOWNLOAD_FLUSH_INTERVAL`` seconds by each web process), never in the download's request.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.caching.generation import KEEPS_CACHES
from app.models import Package, PackageFile
from app.models.base import utcnow


def store_downloads(session: Session, downloads: Mapping[int, int]) -> None:
    """Add these downloads (by file id) to the files and to their releases. No index page
    shows them: the caches stay (the API and the package page read them afresh)."""
    now = utcnow()
    for file_id, count in downloads.items():
        session.execute(
            update(PackageFile)
            .where(PackageFile.id == file_id)
            .values(download_count=PackageFile.download_count + count, last_downloaded_at=now)
            .execution_options(synchronize_session=False, **KEEPS_CACHES)
        )
        release = select(PackageFile.package_id).where(PackageFile.id == file_id)
        session.execute(
            update(Package)
            .where(Package.id == release.scalar_subquery())
            .values(download_count=Package.download_count + count, last_downloaded_at=now)
            .execution_options(synchronize_session=False, **KEEPS_CACHES)
        )
    session.commit()
