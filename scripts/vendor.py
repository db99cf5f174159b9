"""The panel's vendored front-end files: refresh them from npm, or check them offline.

    .venv/bin/python scripts/vendor.py            # same as --check: offline, used by ./test
    .venv/bin/python scripts/vendor.py refresh    # npm pack each package, verify, re-vendor

`PACKAGES` below says what to vendor; `refresh` downloads each tarball with `npm pack`, refuses it
unless its sha512 equals the registry's `dist.integrity` (and the lock's, for an unchanged
version), copies only the listed files and the licence into `vendor/<dir>/`, strips
`sourceMappingURL` comments and writes `vendor.lock.json` with each file's sha256. `--check`
needs no network: every locked file is present with its hash, nothing else is there, and no
`sourceMappingURL` is left. See docs/panel-vendoring.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "src" / "vmcloud" / "web" / "static" / "vendor"
LOCK_NAME = "vendor.lock.json"


@dataclass(frozen=True)
class Package:
    """One npm package: where it goes and which of its files (tarball path -> vendored name)."""

    directory: str
    name: str
    version: str
    files: dict[str, str]
    licence: str  # the licence file inside the tarball


PACKAGES = (
    Package(
        "htmx",
        "htmx.org",
        "4.0.1",
        {"dist/htmx.min.js": "htmx.min.js", "dist/ext/hx-sse.min.js": "hx-sse.min.js"},
        "LICENSE",
    ),
    Package("pico", "@picocss/pico", "2.1.1", {"css/pico.min.css": "pico.min.css"}, "LICENSE.md"),
    Package(
        "uplot",
        "uplot",
        "1.6.32",
        {"dist/uPlot.iife.min.js": "uPlot.iife.min.js", "dist/uPlot.min.css": "uPlot.min.css"},
        "LICENSE",
    ),
    Package(
        "xterm",
        "@xterm/xterm",
        "6.0.0",
        {"lib/xterm.js": "xterm.js", "css/xterm.css": "xterm.css"},
        "LICENSE",
    ),
    Package(
        "xterm-addon-fit",
        "@xterm/addon-fit",
        "0.11.0",
        {"lib/addon-fit.js": "addon-fit.js"},
        "LICENSE",
    ),
)

# `//# sourceMappingURL=…` and `/*# sourceMappingURL=… */` (and the older `@` spelling).
SOURCE_MAP_LINE = re.compile(
    rb"^[ \t]*(?://[#@][ \t]*sourceMappingURL=.*|/\*[#@][ \t]*sourceMappingURL=.*?\*/)[ \t]*\r?\n?",
    re.MULTILINE,
)
SOURCE_MAP = re.compile(rb"(?://|/\*)[#@][ \t]*sourceMappingURL=")


class VendorError(Exception):
    """A refresh that must not go on (integrity mismatch, missing file, npm failure)."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sri_sha512(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def strip_source_maps(data: bytes) -> bytes:
    return SOURCE_MAP_LINE.sub(b"", data)


# ---------------------------------------------------------------------------------------------
# check (offline)
# ---------------------------------------------------------------------------------------------


def check(vendor: Path = VENDOR) -> list[str]:
    """Every problem with the vendored tree, as sentences; an empty list means all is well."""
    lock_path = vendor / LOCK_NAME
    try:
        lock = json.loads(lock_path.read_text())
        packages = lock["packages"]
        listed = {str(f["path"]): str(f["sha256"]) for p in packages for f in p["files"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [f"{lock_path}: unreadable lock file ({error!r})"]
    problems = []
    for rel, expected in sorted(listed.items()):
        path = vendor / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            problems.append(f"{rel}: the lock names a path outside vendor/")
        elif not path.is_file():
            problems.append(f"{rel}: listed in {LOCK_NAME} but missing")
        elif (actual := sha256(path.read_bytes())) != expected:
            problems.append(f"{rel}: sha256 {actual} differs from the locked {expected}")
    for path in sorted(p for p in vendor.rglob("*") if p.is_file()):
        rel = path.relative_to(vendor).as_posix()
        if rel != LOCK_NAME and rel not in listed:
            problems.append(f"{rel}: not listed in {LOCK_NAME}")
        if SOURCE_MAP.search(path.read_bytes()):
            problems.append(f"{rel}: still has a sourceMappingURL comment")
    return problems


# ---------------------------------------------------------------------------------------------
# refresh (online: npm)
# ---------------------------------------------------------------------------------------------


def npm(*args: str, cwd: Path) -> str:
    exe = os.environ.get("NPM") or shutil.which("npm") or "/usr/bin/npm"
    done = subprocess.run(  # noqa: S603 - fixed program, arguments from PACKAGES
        [exe, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise VendorError(f"npm {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def locked_integrity(lock: dict[str, Any], package: Package) -> str | None:
    for entry in lock.get("packages", []):
        if entry.get("name") == package.name and entry.get("version") == package.version:
            return str(entry["integrity"])
    return None


def verify(spec: str, tarball: bytes, registry: str, locked: str | None) -> str:
    """The tarball's integrity, if it is npm's sha512 and agrees with the lock; else refuse."""
    if not registry.startswith("sha512-"):
        raise VendorError(f"{spec}: the registry gave no sha512 integrity ({registry!r})")
    if locked is not None and locked != registry:
        raise VendorError(f"{spec}: registry integrity {registry} differs from the locked {locked}")
    if (actual := sri_sha512(tarball)) != registry:
        raise VendorError(f"{spec}: tarball integrity {actual} differs from npm's {registry}")
    return actual


def fetch(package: Package, lock: dict[str, Any], work: Path) -> tuple[bytes, str]:
    """The package's tarball and its verified integrity."""
    spec = f"{package.name}@{package.version}"
    registry = npm("view", spec, "dist.integrity", cwd=work).strip()
    packed = json.loads(npm("pack", spec, "--json", cwd=work))
    tarball = (work / packed[0]["filename"]).read_bytes()
    return tarball, verify(spec, tarball, registry, locked_integrity(lock, package))


def unpack(package: Package, tarball: bytes, integrity: str, target: Path) -> dict[str, Any]:
    """Write the wanted files into target/<directory>/; return the package's lock entry."""
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        members = {m.name.removeprefix("package/"): m for m in archive.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            member = members.get(name)
            handle = archive.extractfile(member) if member else None
            if handle is None:
                raise VendorError(f"{package.name}@{package.version}: no file {name} in tarball")
            return handle.read()

        manifest = json.loads(read("package.json"))
        wanted = {**package.files, package.licence: package.licence}
        files = []
        for source, name in wanted.items():
            data = strip_source_maps(read(source))
            rel = f"{package.directory}/{name}"
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_bytes(data)
            files.append({"path": rel, "source": source, "sha256": sha256(data)})
    return {
        "directory": package.directory,
        "name": package.name,
        "version": package.version,
        "integrity": integrity,
        "license": manifest.get("license"),
        "files": files,
    }


def refresh(vendor: Path = VENDOR) -> None:
    lock_path = vendor / LOCK_NAME
    lock = json.loads(lock_path.read_text()) if lock_path.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work, staged = Path(tmp) / "npm", Path(tmp) / "vendor"
        work.mkdir()
        staged.mkdir()
        entries = []
        for package in PACKAGES:
            tarball, integrity = fetch(package, lock, work)
            entries.append(unpack(package, tarball, integrity, staged))
            sys.stdout.write(f"{package.name}@{package.version} -> {package.directory}/\n")
        new_lock = {
            "comment": "Written by `scripts/vendor.py refresh`, checked by its --check.",
            "packages": entries,
        }
        (staged / LOCK_NAME).write_text(json.dumps(new_lock, indent=2) + "\n")
        if vendor.exists():
            shutil.rmtree(vendor)
        shutil.copytree(staged, vendor)


def main(argv: list[str] | None = None, vendor: Path = VENDOR) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=["refresh", "check"], default="check")
    parser.add_argument("--check", action="store_true", help="offline check (the default)")
    args = parser.parse_args(argv)
    if args.command == "refresh" and not args.check:
        try:
            refresh(vendor)
        except VendorError as error:
            sys.stderr.write(f"vendor refresh refused: {error}\n")
            return 1
    if problems := check(vendor):
        sys.stderr.write("vendored front-end files do not match vendor.lock.json:\n")
        sys.stderr.writelines(f"  {problem}\n" for problem in problems)
        sys.stderr.write("(re-create them with `.venv/bin/python scripts/vendor.py refresh`)\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
