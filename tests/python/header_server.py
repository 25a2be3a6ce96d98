"""A stand-in single-user server that answers every request with the same fixed headers.

Started by orrery's local backend (it reads JUPYTERHUB_SERVICE_URL for its port); the proxy
test compares what the browser gets through orrery with what this server sends. Python's
standard library only: no Date or Server header is added, every header is written as listed.
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

BODY = b"hello from the user's server\n"

# (name, value) in order: repeated names, odd spacing and bytes a proxy might normalise, and
# hop-by-hop headers (Keep-Alive, and X-Hop named by Connection) that must not pass.
HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Cache-Control", "public, max-age=60"),
    ("X-Custom", "a  b\tc"),
    ("Set-Cookie", "one=1; Path=/user/alice/; HttpOnly"),
    ("Set-Cookie", "two=2; Path=/user/alice/"),
    ("Content-Security-Policy", "frame-ancestors 'self'"),
    ("X-Hop", "must not pass"),
    ("Keep-Alive", "timeout=5"),
    ("Connection", "keep-alive, X-Hop"),
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response_only(200)
        for name, value in HEADERS:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


def main():
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    ThreadingHTTPServer((url.hostname, url.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
