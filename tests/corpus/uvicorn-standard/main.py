import asyncio

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def homepage(request):
    loop = asyncio.get_running_loop()
    return JSONResponse({"hello": "starlette", "loop": type(loop).__module__})


app = Starlette(routes=[Route("/", homepage)])
