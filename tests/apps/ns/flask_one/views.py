"""Routes of the app; `from app import app` runs while `app` is still initializing."""
from flask import jsonify, render_template

import config
from app import app


@app.get("/")
def index():
    return jsonify(app=config.APP_NAME, greeting=app.config["GREETING"],
                   page=render_template("page.html").strip(), views_file=__file__)
