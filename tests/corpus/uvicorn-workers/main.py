import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    return {"worker": os.getpid(), "parent": os.getppid()}
