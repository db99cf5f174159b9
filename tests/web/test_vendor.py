"""The vendored front-end files match their lock: the offline check passes, and can fail."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vendor.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vendor_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


vendor = load_script()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "vendor"
    shutil.copytree(vendor.VENDOR, copy)
    return copy


def test_the_committed_tree_passes() -> None:
    assert vendor.check() == []
    assert vendor.main(["--check"]) == 0


def test_every_package_is_locked_with_its_licence() -> None:
    lock = (vendor.VENDOR / vendor.LOCK_NAME).read_text()
    for package in vendor.PACKAGES:
        assert f'"{package.name}"' in lock
        assert f'"{package.version}"' in lock
        assert (vendor.VENDOR / package.directory / package.licence).is_file()
    assert (vendor.VENDOR / "htmx" / "hx-sse.min.js").is_file()


def test_a_copy_passes_until_a_vendored_file_is_altered(tree: Path) -> None:
    assert vendor.check(tree) == []
    with (tree / "htmx" / "htmx.min.js").open("ab") as handle:
        handle.write(b"alert(1)\n")
    problems = vendor.check(tree)
    assert len(problems) == 1
    assert problems[0].startswith("htmx/htmx.min.js: sha256")


def test_an_unlisted_file_fails(tree: Path) -> None:
    (tree / "pico" / "extra.css").write_text("body{}")
    assert vendor.check(tree) == ["pico/extra.css: not listed in vendor.lock.json"]


def test_a_missing_file_fails(tree: Path) -> None:
    (tree / "uplot" / "uPlot.min.css").unlink()
    assert vendor.check(tree) == ["uplot/uPlot.min.css: listed in vendor.lock.json but missing"]


@pytest.mark.parametrize(
    "comment", [b"//# sourceMappingURL=xterm.js.map", b"/*# sourceMappingURL=x.css.map */"]
)
def test_a_source_map_comment_fails(tree: Path, comment: bytes) -> None:
    (tree / "extra.js").write_bytes(b"x();\n" + comment + b"\n")
    problems = vendor.check(tree)
    assert "extra.js: still has a sourceMappingURL comment" in problems


def test_a_locked_file_with_a_source_map_fails_even_with_its_hash_updated(tree: Path) -> None:
    path = tree / "xterm" / "xterm.js"
    data = path.read_bytes() + b"//# sourceMappingURL=xterm.js.map\n"
    path.write_bytes(data)
    lock_path = tree / vendor.LOCK_NAME
    old = vendor.sha256((vendor.VENDOR / "xterm" / "xterm.js").read_bytes())
    lock_path.write_text(lock_path.read_text().replace(old, vendor.sha256(data)))
    assert vendor.check(tree) == ["xterm/xterm.js: still has a sourceMappingURL comment"]


def test_a_missing_or_broken_lock_fails(tree: Path) -> None:
    (tree / vendor.LOCK_NAME).write_text("{not json")
    assert "unreadable lock file" in vendor.check(tree)[0]
    (tree / vendor.LOCK_NAME).unlink()
    assert "unreadable lock file" in vendor.check(tree)[0]


def test_a_lock_path_outside_the_tree_fails(tree: Path) -> None:
    lock_path = tree / vendor.LOCK_NAME
    lock_path.write_text(lock_path.read_text().replace('"htmx/LICENSE"', '"../LICENSE"'))
    problems = vendor.check(tree)
    assert "../LICENSE: the lock names a path outside vendor/" in problems
    assert "htmx/LICENSE: not listed in vendor.lock.json" in problems


def test_main_exits_non_zero_with_the_problems(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "pico" / "pico.min.css").write_text("body{}")
    assert vendor.main([], tree) == 1
    assert "pico/pico.min.css: sha256" in capsys.readouterr().err


def test_refresh_strips_source_map_lines_only() -> None:
    source = b"a();\n//# sourceMappingURL=a.js.map\nb{}\n/*# sourceMappingURL=b.css.map */\n"
    assert vendor.strip_source_maps(source) == b"a();\nb{}\n"
    assert vendor.strip_source_maps(b"'sourceMappingURL=' in code;\n") == (
        b"'sourceMappingURL=' in code;\n"
    )


def test_refresh_refuses_a_tarball_that_is_not_what_npm_published() -> None:
    tarball = b"the real tarball"
    good = vendor.sri_sha512(tarball)
    assert vendor.verify("x@1.0.0", tarball, good, None) == good
    assert vendor.verify("x@1.0.0", tarball, good, good) == good
    with pytest.raises(vendor.VendorError, match=r"tarball integrity .* differs from npm's"):
        vendor.verify("x@1.0.0", b"a tampered tarball", good, None)
    with pytest.raises(vendor.VendorError, match="differs from the locked"):
        vendor.verify("x@1.0.0", tarball, good, vendor.sri_sha512(b"older"))
    with pytest.raises(vendor.VendorError, match="no sha512"):
        vendor.verify("x@1.0.0", tarball, "sha1-abc", None)
