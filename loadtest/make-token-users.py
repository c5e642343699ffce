#!/usr/bin/env python3
"""Creates N users on a Switchboard over REST and writes a users file for switchboard-loadtest
whose passwords are the users' REST session tokens (what QuickBlox apps send to chat).

Usage: make-token-users.py https://127.0.0.1:8443 app.json N users.txt
(app.json from `switchboard app create --json`; the server's certificate is not checked.)
"""
import hmac, hashlib, json, random, ssl, sys, time, urllib.request, urllib.parse
api, app_file, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
app = json.load(open(app_file))
ctx = ssl._create_unverified_context()
def post(path, pairs, token=None):
    body = urllib.parse.urlencode(pairs).encode()
    req = urllib.request.Request(api + path, data=body, method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if token: req.add_header("QB-Token", token)
    return json.load(urllib.request.urlopen(req, context=ctx))
nonce = [random.randint(0, 10**9)]
def session(user=None):
    nonce[0] += 1
    pairs = {"application_id": str(app["application_id"]), "auth_key": app["auth_key"], "nonce": str(nonce[0]), "timestamp": str(int(time.time()))}
    if user:
        pairs["user[login]"], pairs["user[password]"] = user
    msg = "&".join(sorted(f"{k}={v}" for k, v in pairs.items()))
    pairs["signature"] = hmac.new(app["auth_secret"].encode(), msg.encode(), hashlib.sha1).hexdigest()
    return post("/session.json", pairs)["session"]["token"]
apptok = session()
lines = []
for i in range(n):
    login, pw = f"tok{i}", f"tokpass{i}x"
    uid = post("/users.json", {"user[login]": login, "user[password]": pw}, apptok)["user"]["id"]
    tok = session((login, pw))
    lines.append(f"{uid}-{app['application_id']}@localhost {tok}")
open(out, "w").write("\n".join(lines) + "\n")
print(len(lines))
