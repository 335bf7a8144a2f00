"""A small but real Flask app: a template page, a JSON route, a form-ish route.

``create_app(name)`` builds one instance; the memory comparison loads N of
them, either all in one ctxserve process or one per gunicorn.
"""

import os

from flask import Flask, jsonify, render_template_string, request

PAGE = """<!doctype html>
<title>{{ name }}</title>
<h1>{{ name }}</h1>
<ul>{% for item in items %}<li>{{ item.title }}: {{ item.price }}</li>{% endfor %}</ul>
<p>mode={{ mode }}</p>
"""

ITEMS = [{"id": i, "title": f"item {i}", "price": f"{i * 1.25:.2f}"} for i in range(10)]


def create_app(name="app"):
    app = Flask(__name__)
    app.config["APP_NAME"] = name

    @app.route("/")
    def index():
        return render_template_string(PAGE, name=name, items=ITEMS,
                                      mode=os.environ.get("BENCH_MODE", "default"))

    @app.route("/items.json")
    def items():
        return jsonify(app=name, items=ITEMS)

    @app.route("/echo", methods=["GET", "POST"])
    def echo():
        return jsonify(app=name, args=request.args, path=request.path)

    return app
