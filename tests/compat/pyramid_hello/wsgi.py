"""A Pyramid app: a route with a placeholder and a JSON renderer."""
import os

from pyramid.config import Configurator
from pyramid.view import view_config


@view_config(route_name="hello", renderer="json")
def hello(request):
    return {"hello": request.matchdict["name"], "site": os.environ["SITE"],
            "url": request.route_url("hello", name="x")}


with Configurator() as config:
    config.add_route("hello", "/hello/{name}")
    config.scan()
application = config.make_wsgi_app()
