"""Drive a browser-like OAuth login: hub login form, then the user's server via HubOAuth.

usage: oauth_flow.py HUB_URL USER PASSWORD OWNER
Prints the JSON the server's whoami handler returned, or {"status": N} if refused.

Everything goes to the hub's public address: /user/OWNER/... reaches the server through the
hub's in-process proxy, as a browser would.
"""

import json
import sys

import requests


def main():
    hub, user, password, owner = sys.argv[1:5]

    def route(loc):
        if loc.startswith("http://") or loc.startswith("https://"):
            return loc
        return hub + loc

    s = requests.Session()
    r = s.get(hub + "/hub/login")
    r.raise_for_status()
    xsrf = s.cookies.get("_xsrf")
    assert xsrf, "login page set no _xsrf cookie"
    r = s.post(hub + "/hub/login", data={"username": user, "password": password, "_xsrf": xsrf}, allow_redirects=False)
    assert r.status_code in (302, 303), f"login failed: {r.status_code} {r.text[:300]}"

    url = route(f"/user/{owner}/whoami")
    hops = []
    for _ in range(10):
        r = s.get(url, allow_redirects=False)
        hops.append((r.status_code, url))
        if r.status_code in (301, 302, 303, 307):
            url = route(r.headers["Location"])
            continue
        break
    print(json.dumps({"hops": hops}), file=sys.stderr)
    if r.status_code != 200:
        print(json.dumps({"status": r.status_code}))
        return
    print(json.dumps(r.json()))


if __name__ == "__main__":
    main()
