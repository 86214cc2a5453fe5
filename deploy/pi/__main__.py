"""`python -m deploy.pi build|run|boot`: build the emulated Pi's rootfs (and its bootable
image), run its userland under qemu-user, or boot a whole one (systemd) until Ctrl-C.

`make pi-emulator PI_OS=bookworm` runs it and prints the `make deploy` line that reaches it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from fer_edge.edge.cliframe import command_parser, run_command

from deploy.pi.emulator import CPUS, EmulatedPi
from deploy.pi.rootfs import OSES, build_meta, ensure_rootfs, pi_os
from deploy.pi.system import PiSystem, ensure_image, image_meta

PROG = "pi-emulator"


def cmd_build(args) -> None:
    names = list(OSES) if args.os == "all" else [args.os]
    for name in names:
        out = ensure_rootfs(pi_os(name))
        seconds = build_meta(out).get("build_seconds")
        built = f", built in {seconds:.0f} s" if seconds else ""
        print(f"{PROG}: {pi_os(name).label}: {out}{built}")
    if args.system:
        out = ensure_image(pi_os(args.system))
        seconds = image_meta(out).get("build_seconds")
        print(f"{PROG}: bootable {pi_os(args.system).label}: {out}, built in {seconds:.0f} s")


def cmd_boot(args) -> None:
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with PiSystem(pi_os(args.os), port=args.port) as pi:
        print(
            f"{PROG}: {pi.os.label} booted (qemu-system-aarch64, cortex-a72, systemd) in "
            f"{pi.boot_seconds[0]:.0f} s, sshd on 127.0.0.1:{pi.port}\n"
            f'  make deploy PI={pi.target} SSH_OPTS="{pi.ssh_opts}"\n'
            f"  ssh {pi.ssh_opts} {pi.target}\n"
            f"Ctrl-C powers it off and deletes it ({pi.dir}).",
            flush=True,
        )
        try:
            while pi._qemu.poll() is None:
                time.sleep(1)
            print(f"{PROG}: QEMU exited: {pi.tail(500)}", file=sys.stderr)
        except KeyboardInterrupt:
            pass
    print(f"{PROG}: stopped")


def cmd_run(args) -> None:
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # even when started with SIGINT ignored (a & job)
    pi = EmulatedPi(pi_os(args.os), port=args.port, cpu=args.cpu)
    with pi:
        print(
            f"{PROG}: {pi.os.label} on an emulated {pi.cpu} (qemu-user), "
            f"sshd on 127.0.0.1:{pi.port}\n"
            f'  make deploy PI={pi.target} SSH_OPTS="{pi.ssh_opts}" SOURCE=/home/pi/clip.mp4\n'
            f"  ssh {pi.ssh_opts} {pi.target}\n"
            f"Ctrl-C stops it and deletes it ({pi.dir}).",
            flush=True,
        )
        try:
            while pi._proc.poll() is None:
                time.sleep(1)
            print(f"{PROG}: sshd exited: {pi.sshd_log()[-500:]}", file=sys.stderr)
        except KeyboardInterrupt:
            pass
    print(f"{PROG}: stopped; no processes or mounts left")


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser, sub = command_parser("python -m deploy.pi", __doc__.splitlines()[0])
    p = sub.add_parser("build", formatter_class=fmt, help="build (or find cached) rootfs tarballs")
    p.add_argument("--os", default="all", choices=[*OSES, "all"], help="which Pi OS")
    p.add_argument(
        "--system",
        default=None,
        choices=list(OSES),
        help="also the bootable disk image of this OS (kernel, systemd) for deploy/pi/system.py",
    )
    p.set_defaults(func=cmd_build)
    p = sub.add_parser(
        "boot", formatter_class=fmt, help="boot a whole emulated Pi (systemd) until Ctrl-C"
    )
    p.add_argument("--os", default="bookworm", choices=list(OSES), help="which Pi OS")
    p.add_argument("--port", type=int, default=0, help="sshd port on 127.0.0.1 (0 = a free one)")
    p.set_defaults(func=cmd_boot)
    p = sub.add_parser("run", formatter_class=fmt, help="run an emulated Pi until Ctrl-C")
    p.add_argument("--os", default="bookworm", choices=list(OSES), help="which Pi OS")
    p.add_argument("--port", type=int, default=0, help="sshd port on 127.0.0.1 (0 = a free one)")
    p.add_argument(
        "--cpu", default="cortex-a72", choices=list(CPUS), help="a72 = Pi 4's CPU, a76 = Pi 5's"
    )
    p.set_defaults(func=cmd_run)
    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
