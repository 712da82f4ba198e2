"""Virtualenvs of their own for real clients that pin their own `mcp` (and so cannot share ours)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def pinned_venv(venv: Path, pins: list[str]) -> Path:
    """The interpreter of `venv` with exactly `pins` installed, (re)creating it when the pins
    changed; pip's output is kept beside it, in `pip.log`, for when the install fails."""
    python = venv / "bin" / "python"
    marker = venv / "pins.txt"
    wanted = "\n".join(pins)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    log = venv / "pip.log"
    with log.open("w") as out:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", *pins],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"pip install into {venv} failed: {log.read_text()[-2000:]}")
    marker.write_text(wanted)
    return python
