#!/usr/bin/env bash
# Starts virtlogd and libvirtd when they are not answering: with systemd when it runs the
# machine, else as plain daemons (containers and CI machines have no init system).
set -euo pipefail

if virsh -c qemu:///system version >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "start-libvirt: libvirtd is not running and only root can start it" >&2
  exit 0
fi
if [ "$(ps -p 1 -o comm= 2>/dev/null)" = "systemd" ]; then
  systemctl start virtlogd.socket libvirtd.socket libvirtd.service || true
else
  pgrep -x virtlogd >/dev/null || virtlogd -d
  pgrep -x libvirtd >/dev/null || libvirtd -d
fi
for _ in $(seq 1 50); do
  virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo "start-libvirt: libvirtd did not come up" >&2
exit 1
