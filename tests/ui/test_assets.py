"""The dashboard's files: everything the page loads is packaged, served by the lab with the right type,
and nothing is fetched from elsewhere (no CDN)."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from matelix.server.routes.ui import UI_DIR

ROOT = Path(__file__).resolve().parents[2]
MODULE_IMPORT = re.compile(r'^import .*? from "\./([\w.]+)";$', re.MULTILINE)


def referenced_assets() -> set[str]:
    html = (UI_DIR / "index.html").read_text(encoding="utf-8")
    assets = set(re.findall(r'(?:src|href)="/ui/([^"]+)"', html))
    for js in UI_DIR.glob("*.js"):
        assets.update(MODULE_IMPORT.findall(js.read_text(encoding="utf-8")))
    return assets


def test_the_page_loads_only_files_the_lab_serves(client):
    html = client.get("/").text
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)
    for name in referenced_assets():
        res = client.get(f"/ui/{name}")
        assert res.status_code == 200, name
        if name.endswith(".js"):
            assert res.headers["content-type"].startswith("text/javascript"), name  # module scripts need it
        if name.endswith(".css"):
            assert res.headers["content-type"].startswith("text/css"), name


def test_every_dashboard_file_is_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["matelix"]
    files = [p.relative_to(UI_DIR.parent).as_posix() for p in UI_DIR.rglob("*") if p.is_file()]
    assert any(f.startswith("ui/vendor/") for f in files)
    for name in files:
        assert any(fnmatch(name, pattern) for pattern in patterns), name


def test_vendored_chart_library_has_its_licence_and_pinned_version():
    vendor = UI_DIR / "vendor"
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text(encoding="utf-8")
    assert "| 1.6.32 |" in (vendor / "README.md").read_text(encoding="utf-8")
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 40_000
