import numpy as np
from flask import Flask, request

app = Flask(__name__)


@app.route("/stats")
def stats():
    values = np.array([float(v) for v in request.args.get("x", "1,2,3").split(",")])
    return {"mean": float(values.mean()), "std": round(float(values.std()), 6), "numpy": np.__version__}
