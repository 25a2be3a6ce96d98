"""A minimal single-user server that authenticates with JupyterHub's own HubOAuth.

Started by orrery's local backend with the single-user environment (JUPYTERHUB_* variables).
It serves, under JUPYTERHUB_SERVICE_PREFIX:
  api            -> 200 (the hub's readiness check)
  whoami         -> the HubOAuth user model (login through the hub's OAuth provider)
  oauth_callback -> jupyterhub.services.auth.HubOAuthCallbackHandler
This is the same client code jupyterhub-singleuser uses, without Jupyter Server around it.
"""

import json
import os
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import ioloop, web


class WhoAmI(HubOAuthenticated, web.RequestHandler):
    @web.authenticated
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(self.get_current_user()))


class Api(web.RequestHandler):
    def get(self):
        self.write({"version": "singleuser-test-app"})


def main():
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    app = web.Application(
        [
            (prefix + "api", Api),
            (prefix + "whoami", WhoAmI),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
        ],
        cookie_secret=os.urandom(32),
    )
    app.listen(url.port, url.hostname)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
