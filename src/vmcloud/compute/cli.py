"""``vmcloud images|nodes|pools``: compute administration from the command line."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.catalog import service as catalog
from vmcloud.catalog.models import Image
from vmcloud.compute import ips, nodes, tiny_image
from vmcloud.compute.models import IpPool, Node
from vmcloud.compute.schemas import NodeCreate
from vmcloud.config import get_settings
from vmcloud.core.errors import ProblemError
from vmcloud.db.runtime import database_url
from vmcloud.db.session import make_engine, make_session_factory, unit_of_work

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
            with unit_of_work(make_session_factory(engine)) as db:
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


nodes_app = typer.Typer(help="Hypervisor nodes.", no_args_is_help=True)
pools_app = typer.Typer(help="IP address pools.", no_args_is_help=True)


def _session() -> Iterator[Session]:
    settings = get_settings()
    with database_url(settings) as url:
        engine = make_engine(settings, url)
        try:
            with unit_of_work(make_session_factory(engine)) as db:
                yield db
        finally:
            engine.dispose()


def _fail(exc: ProblemError) -> typer.Exit:
    typer.echo(f"error: {exc.detail}", err=True)
    for err in exc.errors or []:
        typer.echo(f"  {err['field']}: {err['message']}", err=True)
    return typer.Exit(1)


@nodes_app.command("add")
def add_node(
    name: Annotated[str, typer.Option(help="Unique name, e.g. hv-01.")],
    uri: Annotated[str, typer.Option(help="libvirt URI, e.g. qemu+ssh://root@hv-01/system.")],
    storage_dir: Annotated[str, typer.Option(help="Directory for disks on the node.")],
    vcpus: Annotated[int, typer.Option()],
    memory_mb: Annotated[int, typer.Option()],
    disk_gb: Annotated[int, typer.Option()],
    region: Annotated[str, typer.Option()] = "local",
    network_mode: Annotated[str, typer.Option(help="user or bridge")] = "user",
    bridge: Annotated[str | None, typer.Option()] = None,
    virt_type: Annotated[str, typer.Option(help="qemu or kvm")] = "qemu",
) -> None:
    """Register a hypervisor node."""
    try:
        body = NodeCreate(
            name=name,
            region=region,
            uri=uri,
            storage_dir=storage_dir,
            network_mode=network_mode,
            bridge=bridge,
            virt_type=virt_type,
            vcpus=vcpus,
            memory_mb=memory_mb,
            disk_gb=disk_gb,
        )
    except ValidationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for db in _session():
        try:
            node = nodes.create_node(db=db, body=body, allow_fake=False)
        except ProblemError as exc:
            raise _fail(exc) from None
        typer.echo(f"node {node.name} added ({node.id})")


@nodes_app.command("list")
def list_nodes() -> None:
    """Show nodes with their capacity and what is allocated."""
    for db in _session():
        for node in db.scalars(select(Node).order_by(Node.name)):
            typer.echo(
                f"{node.name:<16} {node.status:<12} {node.uri:<40} "
                f"vcpu {node.allocated_vcpus}/{node.vcpus} "
                f"mem {node.allocated_memory_mb}/{node.memory_mb} MB "
                f"disk {node.allocated_disk_gb}/{node.disk_gb} GB"
            )


@nodes_app.command("disable")
def disable_node(name: Annotated[str, typer.Argument()]) -> None:
    """Stop placing new instances on a node (its instances keep running)."""
    for db in _session():
        node = db.scalar(select(Node).where(Node.name == name))
        if node is None:
            typer.echo(f"error: no node named {name!r}", err=True)
            raise typer.Exit(1)
        node.status = "disabled"
        typer.echo(f"node {name} disabled")


@pools_app.command("add")
def add_pool(
    name: Annotated[str, typer.Option()],
    cidr: Annotated[str, typer.Option(help="e.g. 203.0.113.0/24")],
    gateway: Annotated[str | None, typer.Option()] = None,
    region: Annotated[str, typer.Option()] = "local",
    reserve: Annotated[list[str] | None, typer.Option(help="An address never handed out.")] = None,
) -> None:
    """Add an address pool to a region."""
    try:
        network = ipaddress.ip_network(cidr, strict=True)
        if gateway is not None and ipaddress.ip_address(gateway) not in network:
            raise ValueError("the gateway is outside the network")
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for db in _session():
        found = catalog.find_active_region(db=db, ref=region)
        if found is None:
            typer.echo(f"error: no region {region!r}", err=True)
            raise typer.Exit(1)
        db.add(
            IpPool(
                name=name,
                region_id=found.id,
                cidr=str(network),
                gateway=gateway,
                reserved=list(reserve or []),
            )
        )
        typer.echo(f"pool {name} added: {network}")


@pools_app.command("resync")
def resync_pool(name: Annotated[str, typer.Option()]) -> None:
    """Rebuild a pool's list of free addresses from the instances (after instances were
    written to the database by other means than ordering, e.g. an import)."""
    for db in _session():
        pool = db.scalar(select(IpPool).where(IpPool.name == name))
        if pool is None:
            typer.echo(f"error: no pool named {name!r}", err=True)
            raise typer.Exit(1)
        listed = ips.resync(db=db, pool=pool)
        typer.echo(f"pool {name}: {listed} free addresses listed")


@app.command("register")
def register_image(
    slug: Annotated[str, typer.Option(help="The image's slug, e.g. debian-12.")],
    path: Annotated[str, typer.Option(help="Base disk on the nodes, e.g. /srv/images/x.qcow2.")],
    disk_format: Annotated[str, typer.Option("--format", help="qcow2 or raw.")] = "qcow2",
    cloud_init: Annotated[bool, typer.Option(help="Attach a NoCloud seed.")] = True,
) -> None:
    """Point an image at a distribution cloud image (every node needs the file at ``path``)
    and make it available."""
    if disk_format not in ("qcow2", "raw") or not path.startswith("/"):
        typer.echo("error: --format is qcow2 or raw, and --path is absolute", err=True)
        raise typer.Exit(1)
    for db in _session():
        image = db.scalar(select(Image).where(Image.slug == slug))
        if image is None:
            typer.echo(f"error: no image {slug!r}", err=True)
            raise typer.Exit(1)
        image.boot_json = {
            "kind": "disk",
            "path": path,
            "format": disk_format,
            "cloud_init": cloud_init,
        }
        image.status = "active"
        typer.echo(f"image {slug} now boots from {path}")


@nodes_app.command("set-image")
def set_node_image(
    node: Annotated[str, typer.Option(help="The node's name.")],
    image: Annotated[str, typer.Option(help="The image's slug.")],
    path: Annotated[str | None, typer.Option(help="Base disk on this node.")] = None,
    kernel: Annotated[str | None, typer.Option(help="Kernel on this node.")] = None,
    initrd: Annotated[str | None, typer.Option(help="Initrd on this node.")] = None,
) -> None:
    """Tell the platform where one node keeps an image's files, when not at the image's own
    paths."""
    given = {k: v for k, v in {"path": path, "kernel": kernel, "initrd": initrd}.items() if v}
    if not given or not all(v.startswith("/") for v in given.values()):
        typer.echo("error: give --path, or --kernel and --initrd, as absolute paths", err=True)
        raise typer.Exit(1)
    for db in _session():
        found = db.scalar(select(Node).where(Node.name == node))
        if found is None or db.scalar(select(Image.id).where(Image.slug == image)) is None:
            typer.echo("error: no such node or image", err=True)
            raise typer.Exit(1)
        found.image_boot_json = {**(found.image_boot_json or {}), image: given}
        typer.echo(f"node {node} boots {image} from {', '.join(given.values())}")
