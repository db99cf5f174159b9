"""``vmcloud images``: OS images for the compute nodes."""

from __future__ import annotations

import typer
from sqlalchemy import select

from vmcloud.catalog.models import Image
from vmcloud.compute import tiny_image
from vmcloud.config import get_settings
from vmcloud.db.runtime import database_url
from vmcloud.db.session import make_engine, make_session_factory

app = typer.Typer(help="OS images.", no_args_is_help=True)

TINY_SLUG = "tiny-linux"


@app.command("build-tiny")
def build_tiny() -> None:
    """Build the tiny busybox guest from this machine's Debian kernel and busybox, and register
    it as image 'tiny-linux'."""
    settings = get_settings()
    target = (settings.data_dir / "images" / TINY_SLUG).resolve()
    try:
        built = tiny_image.build(target)
    except tiny_image.TinyImageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    with database_url(settings) as url:
        engine = make_engine(settings, url)
        try:
            with make_session_factory(engine).begin() as db:
                image = db.scalar(select(Image).where(Image.slug == TINY_SLUG))
                if image is None:
                    image = Image(
                        slug=TINY_SLUG, name="Tiny Linux (busybox)", distro="busybox", version="1"
                    )
                    db.add(image)
                image.boot_json = {
                    "kind": "kernel",
                    "kernel": str(built.kernel),
                    "initrd": str(built.initrd),
                    "cmdline": built.cmdline,
                }
                image.status = "active"
        finally:
            engine.dispose()
    typer.echo(f"Built {built.kernel} and {built.initrd}; image '{TINY_SLUG}' is ready.")
