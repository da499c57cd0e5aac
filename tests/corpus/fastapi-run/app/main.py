from typing import Union

import pandas as pd
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def read_root():
    frame = pd.DataFrame({"price": [1.5, 2.5, 3.0]})
    return {"Hello": "World", "total": float(frame["price"].sum())}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: Union[str, None] = None):
    return {"item_id": item_id, "q": q}
