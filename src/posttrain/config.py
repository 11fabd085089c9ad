"""Where posttrain keeps its data, and which database it talks to.

`POSTTRAIN_HOME` (default `~/.posttrain`) holds the SQLite store and converted model
checkpoints; `POSTTRAIN_DATABASE_URL` (or `--db`) points the store at any SQLAlchemy URL.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The data directory, created on first use readable by its owner only (0700): it holds
    users' conversations."""
    path = Path(os.environ.get("POSTTRAIN_HOME") or Path.home() / ".posttrain").expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is masked by the umask
    return path


def database_url(url: str | None = None) -> str:
    """The store URL: an explicit one, else `POSTTRAIN_DATABASE_URL`, else SQLite in home()."""
    url = url or os.environ.get("POSTTRAIN_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{home() / 'posttrain.db'}"
