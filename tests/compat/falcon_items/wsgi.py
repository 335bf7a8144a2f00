"""A Falcon app: a collection resource with JSON in and out."""
import falcon


class Items:
    def __init__(self):
        self.items = []

    def on_get(self, req, resp):
        resp.media = {"items": self.items}

    def on_post(self, req, resp):
        self.items.append(req.get_media()["item"])
        resp.status = falcon.HTTP_201
        resp.media = {"items": self.items}


application = falcon.App()
application.add_route("/items", Items())
