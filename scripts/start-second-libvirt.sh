#!/usr/bin/env bash
# A second hypervisor on this machine: the libvirt *session* daemon of an unprivileged system
# user (vmcloud-node2), beside the system daemon that scripts/start-libvirt.sh runs. Register it
# as a node of its own (network mode `user`: a session daemon cannot use the system's bridges),
# with a storage directory that user can write.
#
#   start-second-libvirt.sh [--dir DIR]          start it (if it is not answering); print its URI
#   start-second-libvirt.sh [--dir DIR] --stop   stop it (its VMs keep running, as on a restart)
#
# Without --dir the daemon keeps its configuration in the user's home (/var/lib/vmcloud-node2)
# and its sockets in /run/user/<uid>. With --dir, everything is kept in DIR (its home) and
# DIR/run (its runtime directory), so several daemons of that user can run side by side and a
# throwaway one (the test suite's) leaves nothing behind when DIR is removed. Run as root: it
# creates the user (no login shell) and the directories (mode 0700, owned by the user).
# Root reaches the daemon at qemu+unix:///session?socket=<runtime dir>/libvirt/libvirt-sock.
set -euo pipefail

NODE_USER=vmcloud-node2
NODE_HOME=/var/lib/$NODE_USER
dir=""
action=start
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
    --stop) action=stop; shift ;;
    *) echo "usage: $0 [--dir DIR] [--stop]" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "start-second-libvirt: only root can create $NODE_USER and start its daemon" >&2
  exit 1
fi

# One run at a time: two test processes starting at once must not both create the user.
mkdir -p /run/lock
exec 9>/run/lock/vmcloud-second-libvirt.lock
flock 9

if ! getent passwd "$NODE_USER" >/dev/null; then
  useradd --system --user-group --home-dir "$NODE_HOME" --no-create-home \
    --shell /usr/sbin/nologin "$NODE_USER"
fi
uid="$(id -u "$NODE_USER")"

if [ -n "$dir" ]; then
  home="$dir"
  runtime="$dir/run"
else
  home="$NODE_HOME"
  runtime="/run/user/$uid"
fi
socket="$runtime/libvirt/libvirt-sock"
uri="qemu+unix:///session?socket=$socket"

answering() { virsh -c "$uri" version >/dev/null 2>&1; }

# The process of a pid file, if it is still that user's libvirtd or virtlogd.
daemon_pid() {
  local pidfile="$1" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  [ "$(stat -c %u "/proc/$pid")" = "$uid" ] || return 1
  case "$(cat "/proc/$pid/comm" 2>/dev/null)" in libvirtd | virtlogd) echo "$pid" ;; *) return 1 ;; esac
}

if [ "$action" = stop ]; then
  pids=()
  for name in libvirtd virtlogd; do
    if pid="$(daemon_pid "$runtime/libvirt/$name.pid")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${pids[@]}"; do
      if [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        alive=1
      fi
    done
    [ "$alive" -eq 0 ] && exit 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  exit 0
fi

if answering; then
  echo "$uri"
  exit 0
fi

install -d -m 0700 -o "$NODE_USER" -g "$NODE_USER" "$home" "$runtime"

# The session daemon starts its own virtlogd (for the domains' logs) when it needs one.
(
  cd /
  runuser -u "$NODE_USER" -- env -i \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="$home" \
    XDG_RUNTIME_DIR="$runtime" \
    XDG_CONFIG_HOME="$home/.config" \
    XDG_CACHE_HOME="$home/.cache" \
    libvirtd --daemon 9>&-
)
for _ in $(seq 1 100); do
  if answering; then
    echo "$uri"
    exit 0
  fi
  sleep 0.1
done
echo "start-second-libvirt: the session daemon of $NODE_USER did not come up at $socket" >&2
exit 1
