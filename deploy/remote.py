"""SSH and rsync to the Pi, with every failure turned into one StepError line.

Only the user's own SSH set-up is used (config, agent, keys, known_hosts); host-key checking
is never relaxed. BatchMode makes a missing key or an unknown host fail at once with ssh's
own reason instead of waiting for a password prompt that `make` cannot answer.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field

from fer_edge.edge.errors import FerEdgeError

# The user's SSH_OPTS come first: for -o options ssh keeps the first value it sees.
OUR_SSH_OPTS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15")
RSYNC_OPTS = (
    "-az",
    "--delete",
    "--checksum",
    "--omit-dir-times",
    # Changed files travel whole: unchanged ones are hard links to the current release
    # (--link-dest) and never travel, and the delta algorithm against such a basis failed
    # verification ("update discarded", exit 23) from this machine's rsync 3.5.0 to the
    # emulated Bookworm Pi's 3.2.7 on every changed file.
    "--whole-file",
    # Made on the Pi, never shipped: --delete must leave them alone (Python writes
    # __pycache__ next to edge/ at the first run).
    "--exclude=/.venv/",
    "--exclude=/logs/",
    "--exclude=/benchmarks/results/",  # `make bench` results on the Pi outlive a redeploy
    "--exclude=__pycache__/",
    "--out-format=%i %n%L",
)


class StepError(FerEdgeError):
    """A deploy step failed on the Pi or on the way there; exit 1."""

    exit_code = 1

    def __init__(self, step: str, message: str):
        super().__init__(f"step '{step}' failed: {message}")
        self.step = step


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


@dataclass(frozen=True)
class Remote:
    target: str  # user@host, or a Host alias from ~/.ssh/config
    ssh_opts: tuple[str, ...] = field(default=())  # shlex-split SSH_OPTS, e.g. -p 2222 -i key

    def ssh_argv(self, command: str, tty: bool = False) -> list[str]:
        # `sh -c`: the commands are POSIX sh whatever the user's login shell is.
        return [
            "ssh",
            *self.ssh_opts,
            *OUR_SSH_OPTS,
            *(["-tt"] if tty else []),
            self.target,
            "sh -c " + shlex.quote(command),
        ]

    def run(self, step: str, command: str) -> subprocess.CompletedProcess:
        """Run quietly; ssh's own failure (exit 255) becomes a StepError, others are returned."""
        proc = _run(
            step, self.ssh_argv(command), capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if proc.returncode == 255:
            raise StepError(step, f"ssh {self.target}: {last_line(proc.stderr)}")
        return proc

    def stream(self, command: str, on_line) -> int:
        """Run with output passed line by line to on_line (progress on a slow Pi matters)."""
        try:
            proc = subprocess.Popen(
                self.ssh_argv(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        except FileNotFoundError:
            raise StepError(
                "connect", "ssh not found on this machine; install it (apt install openssh-client)"
            ) from None
        with proc:
            for line in proc.stdout:
                on_line(line.rstrip("\n"))
        return proc.returncode

    def interactive(self, command: str) -> int:
        """Hand the terminal over (logs -f). A remote tty, even without a local one, makes
        sshd hang up the remote `tail -F` when we go; without it the tail would linger."""
        return _run("connect", self.ssh_argv(command, tty=True)).returncode

    def rsync(self, src: str, dest_dir: str, *extra: str) -> list[str]:
        """Mirror src/ into dest_dir/ and return rsync's itemized lines (one per change)."""
        rsh = shlex.join(["ssh", *self.ssh_opts, *OUR_SSH_OPTS])
        argv = [
            "rsync",
            *RSYNC_OPTS,
            *extra,
            "-e",
            rsh,
            f"{src.rstrip('/')}/",
            f"{self.target}:{dest_dir}/",
        ]
        proc = _run("sync", argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise StepError(
                "sync",
                f"rsync to {self.target}:{dest_dir} exited {proc.returncode}: "
                f"{last_line(proc.stderr)}",
            )
        return proc.stdout.splitlines()


def _run(step: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, check=False, **kw)
    except FileNotFoundError:
        package = "openssh-client" if argv[0] == "ssh" else argv[0]
        raise StepError(
            step, f"{argv[0]} not found on this machine; install it (apt install {package})"
        ) from None


def changed_files(itemized: list[str]) -> list[str]:
    """Files rsync really sent or deleted. Lines like `.f..t......` (attributes only),
    `cf..t......` (copied on the Pi from the --link-dest release: same bytes, another mtime)
    and directory entries are not changes of content, so they are left out."""
    changes = []
    for line in itemized:
        flags, _, name = line.partition(" ")
        if flags == "*deleting":
            changes.append(f"deleted {name.strip()}")
        elif flags[1:2] == "d" or len(flags) != 11:  # a directory, or rsync's own remark
            continue
        elif flags[:1] in ("<", "h") or (flags[:1] == "c" and "+++" in flags):
            changes.append(("new " if "+++" in flags else "updated ") + name)
    return changes
