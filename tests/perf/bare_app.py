"""The ceiling: a bare Starlette endpoint that parses the JSON body and answers 200.

Served exactly like alertrelay (uvicorn, one process, same loop and HTTP
parser), so the ratio between the two is what alertrelay's own work costs.
"""

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def receive(request: Request) -> JSONResponse:
    data = json.loads(await request.body())
    return JSONResponse({"status": "ok", "accepted": len(data.get("alerts", []))})


app = Starlette(routes=[Route("/webhook/alertmanager", receive, methods=["POST"])])
