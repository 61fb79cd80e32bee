"""The shell script that builds a fresh local sandbox's private root inside its new namespaces, and what
util-linux's `unshare`, which runs it, says of its own when SIGKILL ends the sandbox."""

# Runs as (namespace) root inside the new namespaces: builds the private root, then drops privileges and execs
# the student server. Paths arrive as arguments, never interpolated into the script.
LAUNCH = r"""
set -eu
sbx=$1; python=$2; uid=$3; gpu=$4; shift 4
root=$sbx/root
mount --make-rprivate /
mkdir -p "$root"
mount -t tmpfs -o mode=0755,size=16m grader-root "$root"
expose() {
  if [ -L "$1" ]; then mkdir -p "$(dirname "$root$1")"; ln -s "$(readlink "$1")" "$root$1"; return; fi
  [ -e "$1" ] || return 0
  mkdir -p "$root$1"
  mount --rbind "$1" "$root$1"
  mount -o remount,bind,ro "$root$1"
}
mkdir -p "$root/work" "$root/sandbox/server" "$root/proc" "$root/tmp" "$root/dev/shm"
# Size-capped tmpfs, as in the Docker runner and a forked child: nothing the student writes reaches the host's disk.
# They come first: Python directories exposed below may live under /work or /tmp (a checkout, a CI clone).
mount -t tmpfs -o "size=64m,mode=0700,uid=$uid,gid=$uid,nosuid,nodev,noexec" grader-work "$root/work"
mount -t tmpfs -o size=64m,mode=1777,nosuid,nodev,noexec grader-tmp "$root/tmp"
mount -t tmpfs -o size=64m,mode=1777,nosuid,nodev,noexec grader-shm "$root/dev/shm"
for d in /usr /bin /sbin /lib /lib64 /lib32 /etc "$@"; do expose "$d"; done
if [ "$gpu" = 1 ]; then expose /sys; fi
mount --bind "$sbx/server" "$root/sandbox/server"
mount -o remount,bind,ro "$root/sandbox/server"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
# Its own host name, as a container's and a forked child's (the UTS namespace is its own).
hostname sandbox 2>/dev/null || "$python" -I -S -c 'import socket; socket.sethostname("sandbox")'
for n in null zero urandom random; do touch "$root/dev/$n"; mount --bind "/dev/$n" "$root/dev/$n"; done
if [ "$gpu" = 1 ]; then
  for n in /dev/nvidia*; do
    if [ -d "$n" ]; then mkdir -p "$root$n"; mount --rbind "$n" "$root$n"
    elif [ -e "$n" ]; then touch "$root$n"; mount --bind "$n" "$root$n"; fi
  done
fi
if [ "$uid" = 0 ]; then drop="--no-new-privs"; else drop="--reuid=$uid --regid=$uid --clear-groups --no-new-privs"; fi
exec chroot "$root" /usr/bin/env -C /work setpriv $drop --inh-caps=-all --bounding-set=-all \
  "$python" -I -B /sandbox/server/student_server.py
"""

# util-linux 2.38's unshare cannot pass on a SIGKILL that ended its child (its `signal(SIGKILL, SIG_DFL)` fails):
# it writes this line to the sandbox's stderr and exits 1, where any other signal ends it as it ended the child.
UNSHARE_LOST_SIGKILL = "unshare: sigprocmask unblock failed"


def without_unshare_line(text: str) -> tuple[str, bool]:
    """A fresh local sandbox's stderr without unshare's closing line, and whether it ended with that line."""
    head, _, last = text.rstrip().rpartition("\n")
    return (head, True) if last.startswith(UNSHARE_LOST_SIGKILL) else (text, False)
