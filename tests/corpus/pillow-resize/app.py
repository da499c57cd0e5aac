import io

from flask import Flask, request, send_file
from PIL import Image

app = Flask(__name__)


@app.route("/thumbnail")
def thumbnail():
    size = int(request.args.get("size", 32))
    original = Image.new("RGB", (640, 480), (200, 80, 40))
    original.thumbnail((size, size))
    out = io.BytesIO()
    original.save(out, "PNG")
    out.seek(0)
    return send_file(out, mimetype="image/png", download_name=f"thumb-{original.size[0]}x{original.size[1]}.png")


@app.route("/size")
def size():
    img = Image.new("RGB", (640, 480))
    img.thumbnail((64, 64))
    return {"width": img.width, "height": img.height, "pillow": Image.__version__}
