"""The Zipkin UI (Lens) at `/zipkin/`, on our Zipkin v2 API: a real UI that no one here wrote.

Lens's files come from Maven Central's `io.zipkin:zipkin-server` exec jar (`make zipkin-ui`, `infra/zipkin.sh`:
`BOOT-INF/lib/zipkin-lens-*.jar`, folder `zipkin-lens/`) into ZIPKIN_UI_DIR; nothing is committed or fetched at
run time. Lens reads its settings from `/zipkin/config.json` and calls `/zipkin/api/v2/...` (`api/zipkin.py`
serves the API there too). Its own client-side routes (`/zipkin/traces/<id>`, `/zipkin/dependency`) answer
with its page. The files hold no data, so like the dashboard's they need no token; the API calls do, and Lens
cannot send one: with API_AUTH_TOKENS set, use it behind a proxy that adds the header.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, jsonify, send_from_directory

from panopticon.api.openapi import operation
from panopticon.settings import Settings

blueprint = Blueprint("lens", __name__)

INDEX = "index.html"
# Lens's page keeps inline styles (its component library injects them); scripts only from here.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")
# What Lens asks of zipkin-server's ZipkinUiConfiguration (its defaults, with the dependency graph on).
CONFIG = {"environment": "", "queryLimit": 10, "defaultLookback": 15 * 60 * 1000, "searchEnabled": True,
          "dependency": {"enabled": True, "lowErrorRate": 0.5, "highErrorRate": 0.75}}
ASSET_PATH = {"file": {"type": "string", "minLength": 1, "maxLength": 512,
                        "description": "A file of Lens, or one of its page routes (traces/<id>, dependency)."}}


def ui_dir() -> Path:
    settings: Settings = current_app.config["PANOPTICON_SETTINGS"]
    folder = Path(settings.zipkin_ui_dir).resolve()  # relative to the working directory, as every path setting
    if not (folder / INDEX).is_file():
        abort(404, description=f"the Zipkin UI is not installed in {folder} (ZIPKIN_UI_DIR): run `make zipkin-ui`")
    return folder


@lru_cache(maxsize=4)
def files_of(folder: Path) -> frozenset[str]:
    """Every file of Lens (relative POSIX paths), listed once per folder."""
    return frozenset(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _page(folder: Path) -> Response:
    response = send_from_directory(folder, INDEX, max_age=0, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.get("/zipkin/")
@operation(summary="The Zipkin UI (Lens) over /zipkin/api/v2 (HTML; holds no data, needs no token).",
           response={"type": "string"}, media_types=("text/html",), errors=(404,))
def index() -> Response:
    """Lens's page: search, traces, the dependency graph."""
    return _page(ui_dir())


@blueprint.get("/zipkin/config.json")
@operation(summary="The Zipkin UI's settings.", response={"type": "object"}, errors=())
def config() -> Response:
    """What Lens reads at start: query limit, default lookback, the dependency graph's error-rate colours."""
    return jsonify(CONFIG)


@blueprint.get("/zipkin/<path:file>")
@operation(summary="The Zipkin UI's files and page routes.", response={"type": "string", "format": "binary"},
           path_params=ASSET_PATH, media_types=("text/html", "text/javascript", "text/css", "image/png",
                                                "image/x-icon", "application/octet-stream"), errors=(404,))
def asset(file: str) -> Response:
    """A file of Lens; a page route of it (no file extension, outside static/) answers with its page."""
    folder = ui_dir()
    if file in files_of(folder):  # a lookup in the listing: the request's text never reaches the file system
        response = send_from_directory(folder, file, max_age=3600)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
    if file.startswith("static/") or "." in file.rsplit("/", 1)[-1]:
        abort(404, description=f"no Zipkin UI file {file!r}")
    return _page(folder)
