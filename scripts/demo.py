#!/usr/bin/env python3
"""A tour of the REST API: create a session, run Python, JavaScript and shell in it, move a file
in and out, list the workspace, end the session. Standard library only.

env: SANDBOX_URL (default http://127.0.0.1:8000), SANDBOX_API_KEY (required)"""
import json, os, sys, time, urllib.error, urllib.request, uuid

URL = os.environ.get("SANDBOX_URL", "http://127.0.0.1:8000").rstrip("/")
KEY = os.environ.get("SANDBOX_API_KEY") or sys.exit("set SANDBOX_API_KEY")


def call(method, path, body=None, raw=None, content_type="application/json"):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + KEY)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            payload = r.read()
            return json.loads(payload) if r.headers.get_content_type() == "application/json" and payload else payload
    except urllib.error.HTTPError as e:
        sys.exit("%s %s failed: %s %s" % (method, path, e.code, e.read().decode(errors="replace")))


t = time.time()
session = call("POST", "/api/v1/sessions", {"template_id": "multi-language", "env_vars": {"GREETING": "hello"}})
sid = session["id"]
print("session %s is %s (%.0f ms)" % (sid, session["status"], (time.time() - t) * 1000))

programs = [
    ("python", "import os\ndef handler(event, context):\n    return {'greeting': os.environ['GREETING'], 'name': event['name'], 'id': context.aws_request_id}"),
    ("javascript", "exports.handler = async (event) => ({ sum: event.a + event.b });"),
    ("shell", "echo \"uid=$(id -u) on $(uname -s); processes visible: $(ls /proc | grep -c '^[0-9]')\""),
]
for language, code in programs:
    t = time.time()
    r = call("POST", "/api/v1/executions/sessions/%s/execute-sync" % sid,
             {"code": code, "language": language, "event": {"name": "world", "a": 40, "b": 2}})
    shown = json.dumps(r["return_value"]) if r["return_value"] is not None else r["stdout"].strip()
    print("%-10s %-9s %6.0f ms  %s" % (language, r["status"], (time.time() - t) * 1000, shown))

boundary = uuid.uuid4().hex
form = ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data.csv\"\r\n"
        "Content-Type: text/csv\r\n\r\nx,y\n1,2\n3,4\n\r\n--%s--\r\n" % (boundary, boundary)).encode()
up = call("POST", "/api/v1/sessions/%s/files/upload?path=input/data.csv" % sid, raw=form,
          content_type="multipart/form-data; boundary=" + boundary)
print("uploaded %s (%d bytes)" % (up["path"], up["size"]))
r = call("POST", "/api/v1/executions/sessions/%s/execute-sync" % sid, {
    "language": "python",
    "code": "import csv, os\nos.makedirs('output', exist_ok=True)\nrows = list(csv.DictReader(open('input/data.csv')))\n"
            "open('output/sum.txt', 'w').write(str(sum(int(r['y']) for r in rows)))"})
print("execution %s changed: %s" % (r["status"], ", ".join("%s (%s)" % (a["path"], a["type"]) for a in r["artifacts"])))
print("output/sum.txt says %s" % call("GET", "/api/v1/sessions/%s/files/output/sum.txt" % sid).decode())
ctx = call("POST", "/api/v1/sessions/%s/contexts" % sid, {"language": "python"})
for code in ["import statistics\nvalues = [3, 4, 5]", "statistics.mean(values) * 14"]:
    r = call("POST", "/api/v1/executions/sessions/%s/execute-sync" % sid, {"code": code, "context_id": ctx["id"]})
main = [x["data"]["text/plain"] for x in r["results"] if x["is_main_result"]]
print("code context %s kept its state: the last cell's value is %s" % (ctx["id"], main[0]))
files = call("GET", "/api/v1/sessions/%s/files" % sid)
print("workspace: %s" % ", ".join(f["path"] for f in files["files"]))
print("terminated: %s" % call("POST", "/api/v1/sessions/%s/terminate" % sid)["status"])
call("DELETE", "/api/v1/sessions/%s" % sid)
print("deleted %s" % sid)
