"""The console's stylesheet and script, served from package data with a content hash."""

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from starlette.requests import Request
from starlette.responses import Response

from app.web.console.view import STATIC

_TYPES = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    etag: str
    media_type: str


@lru_cache(maxsize=len(_TYPES))
def asset(name: str) -> Asset:
    body = (STATIC / name).read_bytes()
    return Asset(body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"', _TYPES[name])


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _TYPES:
        return Response("not found", status_code=404, media_type="text/plain")
    item = asset(name)
    headers = {"ETag": item.etag, "Cache-Control": "public, max-age=300"}
    if request.headers.get("if-none-match") == item.etag:
        return Response(status_code=304, headers=headers)
    return Response(item.body, media_type=item.media_type, headers=headers)
