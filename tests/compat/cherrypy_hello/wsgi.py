"""A CherryPy app mounted as a WSGI application (no CherryPy server)."""
import os

import cherrypy


class Root:
    @cherrypy.expose
    @cherrypy.tools.json_out()
    def index(self, name="world"):
        return {"hello": name, "site": os.environ["SITE"]}


# script_name=None: the mount comes from each request's SCRIPT_NAME.
application = cherrypy.Application(Root(), script_name=None, config={"/": {}})
