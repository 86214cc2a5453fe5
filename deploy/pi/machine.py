"""What the emulated Pi is told at each start: its sshd configuration, its CPU (/proc/cpuinfo
for the qemu CPU model) and what this machine trusts (CA bundle), so pip gets through."""

from __future__ import annotations

import os
import platform
import ssl
from pathlib import Path

# qemu CPU model -> (MIDR part number, /proc/cpuinfo Features, the Pi that has it).
CPUS = {
    "cortex-a72": ("0xd08", "fp asimd evtstrm crc32 cpuid", "Raspberry Pi 4"),
    "cortex-a76": (
        "0xd0b",
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
        "dcpop asimddp",
        "Raspberry Pi 5",
    ),
}
SSHD_CONFIG = """\
# Written by deploy/pi (machine.py) for this run only.
ListenAddress 127.0.0.1
Port {port}
HostKey /etc/ssh/ssh_host_ed25519_key
AllowUsers {user}
# Every login runs as the Pi's CPU model (qemu-user reads QEMU_CPU at each exec).
SetEnv QEMU_CPU={cpu}
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
# No PAM in a minimal rootfs; key logins need no PAM (the account has no password).
UsePAM no
Subsystem sftp internal-sftp
PrintMotd no
"""


def host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_ca_bundle() -> Path | None:
    """What this machine trusts, so pip on the Pi gets through the same TLS (a proxy's CA too)."""
    debian = "/etc/ssl/certs/ca-certificates.crt"
    for cand in (os.environ.get("SSL_CERT_FILE"), ssl.get_default_verify_paths().cafile, debian):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def cpuinfo(cpu: str) -> str:
    """An aarch64 /proc/cpuinfo, one entry per CPU this machine has (as /sys says)."""
    part, features, _ = CPUS[cpu]
    entry = (
        "processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
        "CPU part\t: {part}\nCPU revision\t: 3\n\n"
    )
    cpus = "".join(
        entry.format(n=n, features=features, part=part) for n in range(os.cpu_count() or 1)
    )
    # The benchmark names its results after this line: emulated, not a Pi.
    return cpus + f"Hardware\t: emulated {cpu} (qemu-user)\n"
