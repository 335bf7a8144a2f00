"""Flask app one's `config` (flask_one and flask_two both have config, app and views)."""
APP_NAME = "one"
GREETING = "hello from one"
