"""The viewer and annotator web app: a thin FastAPI shell over :class:`comicid.web.data.ViewerData`.

Security of a local server (see docs/VIEWER.md):
- served on 127.0.0.1 unless told otherwise; a non-loopback bind needs a token (checked here on every
  request: ``Authorization: Bearer``, or ``?token=`` once, which sets an HttpOnly cookie);
- only the Host names given are answered (``TrustedHostMiddleware``: blocks DNS-rebinding pages);
- files are served by id only: crops by content hash among the collection's crops, pages by
  (book, page) among the images recorded at import, the front end from the package folder;
- edits are JSON POSTs (a cross-site form cannot send them without a CORS preflight, which is refused),
  bodies are capped at :data:`MAX_BODY` bytes, and every text is validated by the library;
- the front end writes user text with ``textContent`` only, and a Content-Security-Policy forbids
  inline scripts, so a name like ``<script>`` is shown, never run.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from comicid.errors import ComicidError
from comicid.identity.boxes import add_box, delete_box, undo_or_redo
from comicid.identity.curation import EditError
from comicid.report.exports import roster as build_roster
from comicid.store.collection import Collection
from comicid.web.data import NotFound, ViewerData

STATIC = Path(__file__).parent / "static"
MAX_BODY = 256 * 1024
COOKIE = "comicid_token"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
EDITS = ("merge", "split", "move", "not_this", "confirm", "name", "add_box", "delete_box", "undo", "redo")


def create_app(collection: Collection | str | Path, token: str | None = None,
               allowed_hosts: list[str] | None = None) -> FastAPI:
    """Build the app for one collection. ``token``: required on every request when given."""
    collection = collection if isinstance(collection, Collection) else Collection.open(collection)
    collection.assignments()  # refuse at start, with the fix, a collection that was never clustered
    data = ViewerData(collection)
    app = FastAPI(title="comicid viewer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.data = data

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if token is not None:
            offered = (request.headers.get("authorization", "").removeprefix("Bearer ").strip()
                       or request.cookies.get(COOKIE, "") or request.query_params.get("token", ""))
            if not hmac.compare_digest(offered.encode(), token.encode()):
                return JSONResponse({"error": "a token is required"}, status_code=401, headers=SECURITY_HEADERS)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return JSONResponse({"error": f"request body over {MAX_BODY} bytes"}, status_code=413,
                                headers=SECURITY_HEADERS)
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if token is not None and request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost", "::1",
                                                                              "testserver"])

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=404)

    @app.exception_handler(ComicidError)
    async def bad_request(request: Request, error: ComicidError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/overview")
    def overview() -> dict[str, Any]:
        return data.overview()

    @app.get("/api/identities")
    def identities(book: str = "", q: str = Query("", max_length=200), offset: int = Query(0, ge=0),
                   limit: int = Query(60, ge=1, le=500)) -> dict[str, Any]:
        return data.identities(book=book, query=q, offset=offset, limit=limit)

    @app.get("/api/identity")
    def identity(id: str = Query(..., max_length=300), offset: int = Query(0, ge=0),
                 limit: int = Query(60, ge=1, le=500)) -> dict[str, Any]:
        return data.identity(id, offset=offset, limit=limit)

    @app.get("/api/instances")
    def instances(book: str = "", identity: str = "", unknown: bool = False,
                  max_confidence: float | None = Query(None, ge=0, le=1), offset: int = Query(0, ge=0),
                  limit: int = Query(60, ge=1, le=500)) -> dict[str, Any]:
        return data.instance_list(book=book, identity=identity, unknown=unknown, max_confidence=max_confidence,
                                  offset=offset, limit=limit)

    @app.get("/api/instance")
    def instance(key: str = Query(..., max_length=500)) -> dict[str, Any]:
        return data.instance(key)

    @app.get("/api/similar")
    def similar(key: str = Query(..., max_length=500), k: int = Query(12, ge=1, le=100)) -> dict[str, Any]:
        return data.similar(key, k)

    @app.get("/api/page")
    def page(book: str = Query(..., max_length=300), page: str = Query(..., max_length=300)) -> dict[str, Any]:
        return data.page(book, page)

    @app.get("/api/edits")
    def edits(offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        events = data.curator.log.events()
        return {"total": len(events), "items": [e.to_json() for e in events[::-1][offset:offset + limit]]}

    @app.get("/api/roster")
    def roster() -> list[dict[str, Any]]:
        return build_roster(collection)

    @app.post("/api/edit/{kind}")
    async def edit(kind: str, request: Request) -> dict[str, Any]:
        if kind not in EDITS:
            raise HTTPException(404, f"no edit {kind!r}")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "edits are JSON (Content-Type: application/json)")
        body = await _read_limited(request)
        try:
            payload = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(payload, dict):
            raise HTTPException(400, "the body must be a JSON object")
        event = _apply(data, kind, payload)
        return {"event": event.to_json(), "overview": data.overview()}

    @app.get("/crops/{name}")
    def crop(name: str) -> FileResponse:
        return FileResponse(data.crop_path(name), media_type="image/png",
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @app.get("/page-image")
    def page_image(book: str = Query(..., max_length=300), page: str = Query(..., max_length=300)) -> FileResponse:
        return FileResponse(data.page_path(book, page), headers={"Cache-Control": "private, max-age=3600"})

    return app


async def _read_limited(request: Request) -> bytes:
    """The body, refusing it once it passes :data:`MAX_BODY` (also when no Content-Length was sent)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPException(413, f"request body over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _apply(data: ViewerData, kind: str, payload: dict[str, Any]) -> Any:
    curator, who = data.curator, _text(payload.get("who"), "who", required=False) or None

    def keys(name: str) -> list[str]:
        value = payload.get(name)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise EditError(f"'{name}' must be a non-empty list of instance keys")
        return [data.instance_key(v) for v in value]

    if kind == "merge":
        ids = payload.get("identities")
        if not isinstance(ids, list):
            raise EditError("'identities' must be a list of identity ids")
        return curator.merge(ids, into=payload.get("into"), who=who)
    if kind == "split":
        return curator.split(_text(payload.get("identity"), "identity"), keys("instances"), who=who)
    if kind == "move":
        return curator.move(keys("instances"), _text(payload.get("target"), "target"), who=who)
    if kind == "not_this":
        return curator.not_this(keys("instances"), payload.get("identity"), who=who)
    if kind == "confirm":
        return curator.confirm(_text(payload.get("identity"), "identity"),
                               keys("instances") if payload.get("instances") else None, who=who)
    if kind == "name":
        return curator.name(_text(payload.get("identity"), "identity"), name=payload.get("name"),
                            aliases=payload.get("aliases"), attributes=payload.get("attributes"), who=who)
    if kind == "delete_box":
        event = delete_box(curator, data.instance_key(_text(payload.get("instance"), "instance")),
                           _text(payload.get("kind"), "kind"), who=who)
    elif kind == "add_box":
        event = add_box(curator, _text(payload.get("book"), "book"), _text(payload.get("page"), "page"),
                        _text(payload.get("kind"), "kind"), payload.get("box"),
                        identity=_text(payload.get("identity"), "identity", required=False) or None, who=who)
    else:
        event, changed = undo_or_redo(curator, kind, who=who)
        if not changed:  # only switching a box edit changes the parts table
            return event
    data.reload()
    return event


def _text(value: object, name: str, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise EditError(f"'{name}' must be text")
    return value
