"""A private Ray head node on this machine, started with ``ray start --head`` in its own process group.

Why not ``ray.init()``: a new local instance started by ``ray.init()`` forks its processes
(GCS, raylet, workers' parent) from the calling process with a Python ``preexec_fn``, which runs
``os.fork()``'s at-fork handlers; in a process where JAX is already initialized that prints
JAX's "os.fork() was called ... will likely lead to a deadlock" warning, and the child runs
Python code in a copy of a multithreaded process. Here the head is started by the ``ray``
command through a plain ``subprocess`` (fork-exec in C, no Python code in the child, no at-fork
handler), in a new session: JAX is never forked, whatever this process has initialized.

The head listens on 127.0.0.1 with its own temp folder, and :meth:`LocalHead.stop` ends it by
killing its process group (never a global ``ray stop``, which would also stop other people's Ray
instances on the machine). Token authentication follows ``RAY_AUTH_MODE`` when it is set; when
it is unset the private head runs without (a client with the mode unset sends no token, and an
existing ``~/.ray/auth_token`` would otherwise switch the head to token mode and refuse it).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports that are free on 127.0.0.1 now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def group_pids(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (Linux /proc)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getpgid(int(d)) == pgid:
                    pids.append(int(d))
            except OSError:
                continue
    return pids


def ray_command() -> list[str]:
    """The ``ray`` command of this Python environment."""
    exe = Path(sys.executable).with_name("ray")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ray.scripts.scripts"]


class LocalHead:
    """``with LocalHead(num_cpus=2) as head: ray.init(address=head.address)``."""

    def __init__(self, num_cpus: int | None = None, timeout: float = 120.0):
        self.num_cpus = int(num_cpus or os.cpu_count() or 1)
        self.timeout = timeout
        self.address: str | None = None
        self.pgid: int | None = None
        self.tmp: str | None = None
        self.start_s = float("nan")

    def start(self) -> "LocalHead":
        self.tmp = tempfile.mkdtemp(prefix="rnnlab-ray-", dir="/tmp")     # short: Ray's socket paths
        port, dash, agent, agent_grpc, renv, metrics = free_ports(6)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.setdefault("RAY_AUTH_MODE", "disabled")
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        cmd = ray_command() + [
            "start", "--head", "--num-cpus", str(self.num_cpus), "--port", str(port),
            "--node-ip-address", "127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
            "--temp-dir", self.tmp, "--dashboard-port", str(dash), "--dashboard-agent-listen-port", str(agent),
            "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(renv),
            "--metrics-export-port", str(metrics)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        self.pgid = proc.pid
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise ConfigError(f"backend: `ray start --head` did not finish in {self.timeout:.0f} s") from None
        self.start_s = time.perf_counter() - t0
        if proc.returncode != 0:
            self.stop()
            last = [ln for ln in out.strip().splitlines() if ln.strip()][-1:] or ["no output"]
            raise ConfigError(f"backend: `ray start --head` failed (exit {proc.returncode}): {last[0]}")
        self.address = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Kill the head's process group (SIGTERM, then SIGKILL) and remove its temp folder."""
        if self.pgid is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.pgid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline and group_pids(self.pgid):
                    time.sleep(0.1)
                if not group_pids(self.pgid):
                    break
            self.pgid = None
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> "LocalHead":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
