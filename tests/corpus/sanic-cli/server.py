from sanic import Sanic
from sanic.response import json

app = Sanic("CorpusApp")


@app.get("/")
async def hello_world(request):
    return json({"hello": "sanic"})
