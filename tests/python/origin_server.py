"""A stand-in single-user server for the per-user origins tests.

Started by orrery's local backend (it reads JUPYTERHUB_SERVICE_URL for its port). It tells the
test what reached it and what a page on its origin can do:

- `<prefix>echo`: JSON with the request's Host and Cookie headers and the JUPYTERHUB_*
  environment the hub gave it;
- `<prefix>page`: an HTML page whose script tries to read the hub's `/hub/token` page and the
  hub's API with the visitor's credentials, and writes what happened into the page (`#result`);
- `<prefix>api/me`: Jupyter Server's identity API, faked: the visitor is whoever the
  server's login cookie (`jupyterhub-user-<owner>`) names, and without it 403 (the proxy asks
  this of shared servers);
- anything else: 200 "ok" (the hub's readiness check asks `<prefix>api`).

Python's standard library only.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

PAGE = """<!doctype html>
<html><head><title>a user's page</title></head><body>
<pre id="result">running</pre>
<script>
const hub = %(hub)s;
async function probe(url, init) {
  try {
    const r = await fetch(url, init);
    const text = await r.text();
    return "READ " + r.status + " " + text.slice(0, 200);
  } catch (e) {
    return "BLOCKED " + e.name;
  }
}
(async () => {
  const out = [];
  out.push("token-page: " + await probe(hub + "/hub/token", {credentials: "include"}));
  out.push("api-user: " + await probe(hub + "/hub/api/user", {credentials: "include"}));
  out.push("same-origin-token: " + await probe("/hub/token", {credentials: "include"}));
  out.push("cookies: " + JSON.stringify(document.cookie));
  document.getElementById("result").textContent = out.join("\\n");
  document.title = "done";
})();
</script></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_body(self, ctype, body):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = urlparse(self.path).path
        if path.endswith("/api/me"):
            owner = os.environ.get("JUPYTERHUB_USER", "")
            who = None
            for part in (self.headers.get("Cookie") or "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == f"jupyterhub-user-{owner}":
                    who = v
            if who is None:
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"identity": {"username": who}, "permissions": {}}).encode()
            self.send_body("application/json", body)
        elif path.endswith("/echo"):
            env = {k: v for k, v in os.environ.items() if k.startswith("JUPYTERHUB_")}
            env.pop("JUPYTERHUB_API_TOKEN", None)
            body = json.dumps(
                {
                    "host": self.headers.get("Host"),
                    "cookie": self.headers.get("Cookie"),
                    "env": env,
                }
            ).encode()
            self.send_body("application/json", body)
        elif path.endswith("/page"):
            hub = json.dumps(os.environ.get("JUPYTERHUB_HOST", ""))
            self.send_body("text/html; charset=utf-8", (PAGE % {"hub": hub}).encode())
        else:
            self.send_body("text/plain", b"ok")

    def log_message(self, *args):
        pass


def main():
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    ThreadingHTTPServer((url.hostname, url.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
