#!/usr/bin/env bash
# Installs what ./run and ./test need and is missing: Debian packages with apt-get, then the
# Python environment (.venv) exactly as uv.lock pins it. Safe to run again; does nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."

# postgresql-15: the database (embedded by ./run, per test run by ./test); pgbackrest: its
# WAL archiving, backups and restores.
# qemu/libvirt/busybox/kernel: real VMs, and the tiny guest image built from Debian's parts.
# libvirt-dev, pkg-config: to build libvirt-python. oathtool: an independent TOTP for the tests.
# chromium (+ a font): the browser the panel tests drive through Playwright.
APT_PACKAGES=(
  postgresql-15 postgresql-client-15 pgbackrest
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  busybox-static linux-image-cloud-amd64
  oathtool wrk
  chromium fonts-liberation
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}" >&2
  # The platform runs its own clusters; Debian's default 'main' cluster would only sit idle.
  as_root mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.d/vmcloud.conf >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
    echo "bootstrap: installing uv $UV_VERSION" >&2
    python3 -m venv .tools
    .tools/bin/pip install -q "uv==$UV_VERSION"
  fi
  export PATH="$PWD/.tools/bin:$PATH"
fi

export UV_PYTHON_DOWNLOADS=never
# Bytecode compiled once, here: with PYTHONDONTWRITEBYTECODE set (as on some machines) every
# Python process would otherwise compile each module it imports again, about 6 s of CPU per
# `vmcloud` process on a 2-core machine (the API's processes, the worker, each CLI command).
uv sync --locked --quiet --compile-bytecode
.venv/bin/python -m compileall -q -j 0 src tests >/dev/null

./scripts/start-libvirt.sh
