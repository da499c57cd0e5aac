import cherrypy


class HelloWorld:
    @cherrypy.expose
    def index(self):
        return "Hello World from CherryPy!"


if __name__ == "__main__":
    cherrypy.config.update({"server.socket_host": "0.0.0.0", "server.socket_port": 8080, "engine.autoreload.on": False})
    cherrypy.quickstart(HelloWorld())
