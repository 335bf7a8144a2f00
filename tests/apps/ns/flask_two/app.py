"""The classic Flask layout: `app` creates the Flask object, `views` imports it back."""
from flask import Flask

import config

app = Flask(__name__)  # root_path (templates/) is found through sys.modules[__name__]
app.config.from_object(config)

import views  # noqa: E402,F401  (registers the routes; imports `app` circularly)
