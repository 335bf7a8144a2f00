"""Flask app two's `config` (flask_one and flask_two both have config, app and views)."""
APP_NAME = "two"
GREETING = "hello from two"
