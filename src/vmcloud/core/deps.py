"""Dependencies shared by every domain's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vmcloud.config import Settings


def app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def _app_settings(request: Request) -> Settings:
    # Async: a dependency that does no I/O costs no threadpool hop.
    return app_settings(request)


AppSettings = Annotated[Settings, Depends(_app_settings)]
