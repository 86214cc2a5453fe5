"""Several Pis at once: `make deploy PI="pi@a pi@b"` runs one `python -m deploy` per Pi, in
parallel, each line prefixed with its Pi, then one summary line per Pi.

Each Pi gets its own process, so a Pi that hangs or fails cannot stop the others; the exit
status is 0 only when every Pi succeeded. The same goes for status, logs, undeploy and
rollback.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from fer_edge.edge.errors import FerEdgeError

from deploy.stage import PROJECT_ROOT


class FleetError(FerEdgeError):
    """Some Pis failed; their summary lines say which and why."""

    exit_code = 1


@dataclass
class Outcome:
    target: str
    rc: int | None = None
    seconds: float = 0.0
    error: str = ""  # the child's one-line error, without "deploy: error: "


def targets(pi: str) -> list[str]:
    """PI as a list: whitespace separates Pis (user@host has none)."""
    return pi.split()


def run_fleet(prog: str, command: str, argv: list[str], pis: list[str]) -> None:
    """Run `python -m deploy ARGV --pi=P` for every P at once; raise FleetError if any failed."""
    lock = threading.Lock()
    width = max(len(p) for p in pis)

    def one(outcome: Outcome) -> None:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy", *argv, f"--pi={outcome.target}"],
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        with proc:
            for line in proc.stdout:
                line = line.rstrip("\n")
                if line.startswith(f"{prog}: error: "):
                    outcome.error = line[len(f"{prog}: error: ") :]
                with lock:
                    print(f"[{outcome.target:<{width}}] {line}", flush=True)
        outcome.rc = proc.returncode
        outcome.seconds = time.monotonic() - t0

    outcomes = [Outcome(p) for p in pis]
    threads = [threading.Thread(target=one, args=(o,), daemon=True) for o in outcomes]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:  # the children got the same Ctrl-C; let them finish
        for t in threads:
            t.join(timeout=15)
    print(f"{prog}: {command} on {len(pis)} Pis:", flush=True)
    for o in outcomes:
        if o.rc == 0 or (command == "logs" and o.rc == 130):
            verdict = "ok"
        else:
            verdict = f"FAILED ({o.error or f'exit status {o.rc}'})"
        print(f"  {o.target:<{width}}  {verdict}  {o.seconds:.0f} s", flush=True)
    failed = [o.target for o in outcomes if o.rc != 0 and not (command == "logs" and o.rc == 130)]
    if failed:
        raise FleetError(f"{command} failed on {len(failed)} of {len(pis)} Pis: {' '.join(failed)}")
