from alembic import command
from alembic.config import Config
from flask import Flask
from sqlalchemy import create_engine, text

command.upgrade(Config("alembic.ini"), "head")  # migrate on start, as the release step would
engine = create_engine("sqlite:////tmp/app.db")
with engine.begin() as conn:
    conn.execute(text("INSERT INTO items (name) VALUES ('kiln')"))

app = Flask(__name__)


@app.route("/items")
def items():
    with engine.connect() as conn:
        return {"items": [row.name for row in conn.execute(text("SELECT name FROM items"))]}


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
