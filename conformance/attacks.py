#!/usr/bin/env python3
"""Runs the control-plane attack cases (control-plane.json) against a running sandbox server
through its public REST API: attacks on the server itself rather than on the sandbox.

usage: attacks.py [control-plane.json]
env:   SANDBOX_URL (default http://127.0.0.1:8000), SANDBOX_API_KEY, SANDBOX_TEMPLATE (default python-basic)
Cases that need an admin key are skipped (and say so) with another key. Prints one line per
case and a last line 'attacks: P/N held'. Exit 0 iff every case that ran held."""
import http.client, json, os, sys, time, urllib.parse

URL = os.environ.get("SANDBOX_URL", "http://127.0.0.1:8000").rstrip("/")
KEY = os.environ.get("SANDBOX_API_KEY", "")
TEMPLATE = os.environ.get("SANDBOX_TEMPLATE", "python-basic")
HERE = os.path.dirname(os.path.abspath(__file__))


def connection():
    u = urllib.parse.urlsplit(URL)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    return cls(u.hostname, u.port, timeout=300)


def call(method, path, body=None, key=None, raw=False):
    c = connection()
    headers = {"Authorization": "Bearer " + (key or KEY)}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        payload = r.read()
    finally:
        c.close()
    if raw:
        return r.status, payload
    try:
        return r.status, json.loads(payload) if payload else None
    except ValueError:
        return r.status, payload.decode(errors="replace")


def session(body=None, key=None):
    st, s = call("POST", "/api/v1/sessions", body or {"template_id": TEMPLATE}, key=key)
    if st not in (200, 201):
        raise RuntimeError("cannot create a session: %s %s" % (st, s))
    deadline = time.time() + 120
    while s.get("status") == "creating" and time.time() < deadline:
        time.sleep(0.2)
        _, s = call("GET", "/api/v1/sessions/" + s["id"], key=key)
    return s


def files(sid, skip=lambda p: False):
    """Every regular file of a session (path, bytes), but those `skip` names."""
    _, listing = call("GET", "/api/v1/sessions/%s/files?limit=10000" % sid)
    out = []
    for f in (listing or {}).get("files", []):
        if f.get("type") == "file" and not skip(f["path"]):
            st, data = call("GET", "/api/v1/sessions/%s/files/%s" % (sid, urllib.parse.quote(f["path"])), raw=True)
            if st == 200:
                out.append((f["path"], data))
    return out


def resume_during(case):
    src = session()["id"]
    try:
        body = {"code": case["code"], "language": case["language"], "timeout": case["timeout"]}
        st, sub = call("POST", "/api/v1/executions/sessions/%s/execute" % src, body)
        if st != 201:
            return "could not start the program: %s %s" % (st, sub)
        deadline = time.time() + 60
        while not any(p == case["ready_file"] for p, _ in files(src, lambda p: "filler" in p)):
            if time.time() > deadline:
                return "the program never got ready"
            time.sleep(0.5)
        copies = 0
        for attempt in range(case["attempts"]):
            st, s = call("POST", "/api/v1/sessions", {"template_id": TEMPLATE, "source_session_id": src})
            if st not in (200, 201):
                if not isinstance(s, dict) or "code" not in s:
                    return "attempt %d: an unclean refusal: %s %s" % (attempt, st, s)
                continue
            try:
                if s.get("status") != "running":
                    continue
                copies += 1
                for path, data in files(s["id"], lambda p: "filler" in p):
                    for bad in case["forbidden"]:
                        if bad.encode() in data:
                            return "LEAK attempt %d: %s holds %r" % (attempt, path, bad)
            finally:
                call("DELETE", "/api/v1/sessions/" + s["id"])
        return "" if copies else "no attempt made a session: the copy was never tried"
    finally:
        call("DELETE", "/api/v1/sessions/" + src)


def request(case):
    body = json.loads(json.dumps(case.get("body")).replace("$TEMPLATE", TEMPLATE))
    st, r = call(case["method"], case["path"], body)
    if isinstance(r, dict) and st in (200, 201) and r.get("id"):
        call("DELETE", "/api/v1/sessions/" + r["id"])
    if st != case["expect_status"] or (isinstance(r, dict) and r.get("code")) != case["expect_code"]:
        return "got %s %s" % (st, str(r)[:200])
    return ""


def huge_upload(case):
    sid = session()["id"]
    sent = [0]
    limit = case["send_mb"] << 20

    def body():
        yield case["prefix"].encode()
        chunk = b"x" * (1 << 20)
        while sent[0] < limit:
            sent[0] += len(chunk)
            yield chunk

    c = connection()
    try:
        c.putrequest("POST", "/api/v1/sessions/%s/files/upload?path=big.bin" % sid)
        c.putheader("Authorization", "Bearer " + KEY)
        c.putheader("Content-Type", case["content_type"])
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        status = None
        try:
            for part in body():
                c.send(b"%x\r\n%s\r\n" % (len(part), part))
            c.send(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed while we were still sending
        status = c.getresponse().status
    except (OSError, http.client.HTTPException) as e:
        return "no answer: %s (after %d MiB)" % (e, sent[0] >> 20)
    finally:
        c.close()
        call("DELETE", "/api/v1/sessions/" + sid)
    if status != case["expect_status"]:
        return "got %s after %d MiB" % (status, sent[0] >> 20)
    if sent[0] >= limit:
        return "the server read all %d MiB before answering" % (sent[0] >> 20)
    return ""


def new_key(name):
    st, k = call("POST", "/api/v1/admin/keys", {"name": name})
    if st != 201:
        return None
    return k["id"], k["key"]


def with_tenants(names, run):
    keys = [new_key(n) for n in names]
    if not all(keys):
        return None
    try:
        return run(*[k[1] for k in keys])
    finally:
        for k in keys:
            call("DELETE", "/api/v1/admin/keys/" + k[0])


def foreign_session_id(case):
    def run(alice, mallory):
        name = "attack-probe-%d" % os.getpid()
        made = []
        try:
            for key in (alice, mallory):
                st, s = call("POST", "/api/v1/sessions", {"template_id": TEMPLATE, "id": name}, key=key)
                if st != 201 or s.get("id") != name:
                    return "LEAK a second key choosing the same id got %s %s" % (st, str(s)[:200])
                made.append((key, name))
            path = "/api/v1/executions/sessions/%s/execute-sync" % name
            call("POST", path, {"code": "open('mark','w').write('a')", "language": "python"}, key=alice)
            _, r = call("POST", path, {"code": "import os; print(os.path.exists('mark'))", "language": "python"}, key=mallory)
            if not isinstance(r, dict) or r.get("stdout") != "False\n":
                return "LEAK the two keys share a session: %s" % str(r)[:200]
            return ""
        finally:
            for key, sid in made:
                call("DELETE", "/api/v1/sessions/" + sid, key=key)

    return with_tenants(["attack-alice", "attack-mallory"], run)


def tenant_view(case):
    def run(tenant):
        st, s = call("POST", "/api/v1/sessions", {"template_id": TEMPLATE}, key=tenant)
        if st != 201:
            return "cannot create a session: %s %s" % (st, s)
        try:
            shown = [f for f in case["hidden_fields"] if s.get(f) is not None]
            if shown:
                return "LEAK a tenant sees %s" % shown
            for path in case["admin_only"]:
                st, _ = call("GET", path, key=tenant)
                if st != 403:
                    return "LEAK a tenant got %s for %s" % (st, path)
            return ""
        finally:
            call("DELETE", "/api/v1/sessions/" + s["id"], key=tenant)

    return with_tenants(["attack-tenant"], run)


KINDS = {
    "resume_during": resume_during,
    "request": request,
    "huge_upload": huge_upload,
    "foreign_session_id": foreign_session_id,
    "tenant_view": tenant_view,
}


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "control-plane.json")
    cases = json.load(open(path))
    held = ran = 0
    for case in cases:
        t = time.time()
        why = KINDS[case["kind"]](case)
        if why is None:
            print("SKIP %s: needs an admin key" % case["name"])
            continue
        ran += 1
        if why:
            print("FAIL %s: %s" % (case["name"], why))
        else:
            held += 1
            print("ok   %s (%.1fs)" % (case["name"], time.time() - t))
    print("attacks: %d/%d held" % (held, ran))
    sys.exit(0 if held == ran and ran > 0 else 1)


main()
