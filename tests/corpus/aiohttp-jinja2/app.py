import aiohttp_jinja2
import jinja2
from aiohttp import web


@aiohttp_jinja2.template("hello.html")
async def hello(request):
    return {"name": request.match_info.get("name", "world")}


def init_func(argv):
    app = web.Application()
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader("templates"))
    app.add_routes([web.get("/hello/{name}", hello)])
    return app
