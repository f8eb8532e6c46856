"""A sink that answers 200 at once and counts, for the delivery benchmark.

Run in a process of its own (``uvicorn tests.perf.sink_app:app``) so the
worker being measured does not share an interpreter with it.
"""

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_state = {"count": 0, "first": 0.0, "last": 0.0}


async def receive(request: Request) -> Response:
    await request.body()
    now = time.monotonic()
    if _state["count"] == 0:
        _state["first"] = now
    _state["count"] += 1
    _state["last"] = now
    return Response("ok")


async def count(request: Request) -> JSONResponse:
    return JSONResponse(_state)


app = Starlette(
    routes=[Route("/hook", receive, methods=["POST"]), Route("/count", count, methods=["GET"])]
)
