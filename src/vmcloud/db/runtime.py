"""Which database a command uses: ``DATABASE_URL`` when set, else the embedded cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vmcloud.config import Settings
from vmcloud.db.embedded import EmbeddedPostgres

EMBEDDED_DBNAME = "vmcloud"


@contextmanager
def database_url(settings: Settings, *, archive: bool = False) -> Iterator[str]:
    """Yield a URL to use; an embedded server started here is stopped on the way out. With
    ``archive`` (``vmcloud up``) the embedded server archives its WAL for backups."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded_server = EmbeddedPostgres(
        settings.data_dir / "postgres", archive=archive, repo2=settings.backup_repo2
    )
    with embedded_server as embedded:
        embedded.create_database(EMBEDDED_DBNAME)
        yield embedded.url(EMBEDDED_DBNAME)
