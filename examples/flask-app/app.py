"""A small Flask app: JSON, a page from a Jinja template, a static file, and a form POST."""

import importlib.metadata
import platform

from flask import Flask, jsonify, render_template, request

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return render_template("index.html", flask_version=importlib.metadata.version("flask"))


@app.get("/api/info")
def info():  # noqa: ANN201
    return jsonify(app="flask-app", python=platform.python_version(), flask=importlib.metadata.version("flask"))


@app.post("/echo")
def echo():  # noqa: ANN201
    return jsonify(form=request.form.to_dict())


if __name__ == "__main__":
    print("flask-app listening on 0.0.0.0:8080", flush=True)
    app.run(host="0.0.0.0", port=8080)
