import falcon


class ThingsResource:
    def on_get(self, req, resp):
        resp.media = {"quote": "I've always been more interested in the future than in the past."}


app = falcon.App()
app.add_route("/things", ThingsResource())
