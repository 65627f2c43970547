"""Files that live at the top of the repo and ship in the wheel as package data.

``recipes/*.toml``, ``calibration/*.toml`` and ``export/*.sh`` stay where they are in the repo;
setup.py copies them into ``bridge_edge/_data/<folder>/`` when a wheel is built. A checkout (or
an editable install) reads the repo copy; a normal install reads the packaged one. See
docs/bundles.md ("Installing on the device").
"""

from __future__ import annotations

from pathlib import Path

from bridge_edge.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGED = Path(__file__).resolve().parent / "_data"
FOLDERS = ("recipes", "calibration", "export")


def data_dir(folder: str) -> Path:
    """The repo's ``folder`` when this is a checkout, else the packaged copy."""
    if folder not in FOLDERS:
        raise ConfigError(
            f"unknown data folder {folder!r}; expected one of {FOLDERS}", key="folder", value=folder
        )
    repo = REPO_ROOT / folder
    if repo.is_dir() and (REPO_ROOT / "pyproject.toml").is_file():
        return repo
    return PACKAGED / folder


def data_file(folder: str, name: str) -> Path:
    """A named file of ``folder`` (e.g. ``data_file("recipes", "default.toml")``); may not exist."""
    return data_dir(folder) / name


def named_toml(folder: str, name: str | Path) -> Path | None:
    """A bare name (``default``) resolved to ``<folder>/<name>.toml`` when such a file exists."""
    text = str(name)
    if "/" in text or text.endswith(".toml"):
        return None
    path = data_file(folder, f"{text}.toml")
    return path if path.is_file() else None
