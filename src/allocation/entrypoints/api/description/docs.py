"""Serves the OpenAPI description, the AsyncAPI description of the Redis messages, and
the HTTP API's docs page (Swagger UI, from the files of the
`flask-swagger-ui` package: the page loads nothing from other hosts and works offline)."""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

from flask import Flask, Response, abort, send_from_directory, url_for

from allocation.entrypoints.api.description.openapi import TITLE, build_spec
from allocation.entrypoints.workers import asyncapi

# Served from the package's Swagger UI distribution under /docs/assets/.
_VENDOR_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "index.css",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)
_INITIALIZER = "swagger-initializer.js"

# The docs page may load only what this server serves (Swagger UI sets inline styles).
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def register_docs(app: Flask) -> None:
    """Adds `/openapi.json`, `/asyncapi.json`, the docs page `/docs`, and the page's
    assets under `/docs/assets/`."""
    spec = json.dumps(build_spec())
    vendor = _swagger_ui_dist()

    @app.get("/openapi.json", endpoint="openapi_json")
    def openapi_json() -> Response:
        return app.response_class(spec, mimetype="application/json")

    messages = json.dumps(asyncapi.build_spec())

    @app.get("/asyncapi.json", endpoint="asyncapi_json")
    def asyncapi_json() -> Response:
        return app.response_class(messages, mimetype="application/json")

    @app.get("/docs", endpoint="docs")
    def docs() -> Response:
        def asset(name: str) -> str:
            return html.escape(url_for("docs_asset", name=name))

        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{html.escape(TITLE)} API</title>
  <link rel="stylesheet" href="{asset("index.css")}">
  <link rel="stylesheet" href="{asset("swagger-ui.css")}">
  <link rel="icon" type="image/png" href="{asset("favicon-32x32.png")}" sizes="32x32">
  <link rel="icon" type="image/png" href="{asset("favicon-16x16.png")}" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{asset("swagger-ui-bundle.js")}"></script>
  <script src="{asset(_INITIALIZER)}"></script>
</body>
</html>
"""
        response = app.response_class(page, mimetype="text/html")
        response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response

    @app.get("/docs/assets/<name>", endpoint="docs_asset")
    def docs_asset(name: str) -> Response:
        if name == _INITIALIZER:
            return app.response_class(
                _initializer(url_for("openapi_json")), mimetype="text/javascript"
            )
        if name not in _VENDOR_ASSETS:
            abort(404)
        return send_from_directory(vendor, name)


def _initializer(spec_url: str) -> str:
    # validatorUrl null: by default Swagger UI sends the spec to an online validator.
    config = {"url": spec_url, "dom_id": "#swagger-ui", "deepLinking": True, "validatorUrl": None}
    return (
        'window.addEventListener("load", function () {\n'
        f"  window.ui = SwaggerUIBundle({json.dumps(config)});\n"
        "});\n"
    )


def _swagger_ui_dist() -> Path:
    """The Swagger UI distribution files shipped by the `flask-swagger-ui` package."""
    dist = Path(str(resources.files("flask_swagger_ui") / "dist"))
    missing = sorted(name for name in _VENDOR_ASSETS if not (dist / name).is_file())
    if missing:
        raise RuntimeError(f"Swagger UI files missing from {dist}: {', '.join(missing)}")
    return dist
