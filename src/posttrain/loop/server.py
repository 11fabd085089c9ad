"""A real `posttrain serve` subprocess for the rehearsal (started, waited for, stopped)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["Server", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies (a killed demo
    must not leave a server holding the port and the store)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _command() -> list[str]:
    exe = Path(sys.executable).with_name("posttrain")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("posttrain")
    return [found] if found else [sys.executable, "-c", "from posttrain.cli import main; main()"]


class Server:
    """`posttrain serve --db URL --port P` with POSTTRAIN_HOME=home, logging to `log_path`."""

    def __init__(self, db_url: str, home: Path, log_path: Path, host: str = "127.0.0.1", port: int | None = None,
                 model: str | None = None, env: dict[str, str] | None = None) -> None:
        self.db_url, self.home, self.log_path, self.host = db_url, home, log_path, host
        self.port = port or free_port(host)
        self.model, self.extra_env = model, env or {}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 180.0) -> "Server":
        cmd = [*_command(), "serve", "--host", self.host, "--port", str(self.port), "--db", self.db_url]
        if self.model:
            cmd += ["--model", self.model]
        env = {**os.environ, "POSTTRAIN_HOME": str(self.home), "HF_HUB_OFFLINE": "1", **self.extra_env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise RuntimeError(f"posttrain serve exited with {self.proc.returncode}: {tail[0]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.close()
        raise RuntimeError(f"posttrain serve did not answer /healthz within {timeout:.0f} s (log: {self.log_path})")

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 15 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
