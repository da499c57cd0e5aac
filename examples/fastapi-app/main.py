"""A FastAPI app served by uvicorn: typed path parameters, and a body pydantic validates."""

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

app = FastAPI(title="kiln fastapi-app")


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)


@app.get("/")
def root() -> dict[str, str]:
    return {"hello": "from a kiln unikernel"}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None) -> dict[str, object]:
    return {"item_id": item_id, "q": q}


@app.post("/items")
def create_item(item: Item) -> dict[str, object]:
    return {"created": item.model_dump()}


if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=8000, log_level="info")
