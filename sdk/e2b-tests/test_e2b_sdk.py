"""E2B's own Python SDKs (`e2b`, `e2b-code-interpreter`) against this server's E2B-compatible
API, unchanged: E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY and E2B_DOMAIN point them here
(scripts/e2b-tests.sh sets them)."""

import base64
import os
import uuid

import httpx
import pytest
from e2b import Sandbox, SandboxQuery
from e2b.exceptions import NotFoundException
from e2b_code_interpreter import Sandbox as CodeSandbox

API_URL = os.environ["E2B_API_URL"]
SANDBOX_URL = os.environ["E2B_SANDBOX_URL"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def code_sandbox():
    """One code-interpreter sandbox (template `code-interpreter-v1`) for the cells below."""
    owner = f"t-{uuid.uuid4().hex[:8]}"
    sbx = CodeSandbox.create(timeout=600, envs={"GREETING": "héllo"}, metadata={"owner": owner})
    yield sbx
    sbx.kill()


def test_sandbox_lifecycle():
    owner = f"t-{uuid.uuid4().hex[:8]}"
    sbx = Sandbox.create(template="base", timeout=120, metadata={"owner": owner, "suite": "e2b"})
    assert sbx.sandbox_id.isalnum() and sbx.sandbox_id.islower()
    info = sbx.get_info()
    assert info.sandbox_id == sbx.sandbox_id
    assert info.metadata == {"owner": owner, "suite": "e2b"}
    assert info.end_at > info.started_at

    listed = Sandbox.list(query=SandboxQuery(metadata={"owner": owner})).next_items()
    assert [s.sandbox_id for s in listed] == [sbx.sandbox_id]
    assert Sandbox.list(query=SandboxQuery(metadata={"owner": owner + "-other"})).next_items() == []

    again = Sandbox.connect(sbx.sandbox_id)
    again.files.write("connected.txt", "yes")
    assert sbx.files.read("/home/user/connected.txt") == "yes"

    sbx.set_timeout(30)
    shorter = sbx.get_info()
    assert (shorter.end_at - info.started_at).total_seconds() < 120

    assert sbx.is_running()
    assert sbx.kill() is True
    assert Sandbox.kill(sbx.sandbox_id) is False
    with pytest.raises(NotFoundException):
        Sandbox.get_info(sbx.sandbox_id)


def test_files():
    sbx = Sandbox.create(template="base", timeout=120)
    try:
        info = sbx.files.write("/home/user/dir/a.txt", "alpha")
        assert info.path == "/home/user/dir/a.txt"
        assert sbx.files.read("dir/a.txt") == "alpha"
        assert sbx.files.read("/home/user/dir/a.txt", format="bytes") == bytearray(b"alpha")
        from e2b.sandbox.filesystem.filesystem import WriteEntry

        sbx.files.write_files([WriteEntry(path="m/one.txt", data="1"), WriteEntry(path="m/two.bin", data=b"\x00\x01")])
        names = sorted(e.name for e in sbx.files.list("/home/user/m"))
        assert names == ["one.txt", "two.bin"]
        assert sbx.files.exists("m/two.bin")
        assert not sbx.files.exists("m/none")
        assert sbx.files.make_dir("newdir") is True
        assert sbx.files.make_dir("newdir") is False, "an existing directory"
        entries = {e.name: e for e in sbx.files.list("/home/user")}
        assert entries["newdir"].type.value == "dir" and entries["dir"].type.value == "dir"
        sbx.files.remove("m")
        assert not sbx.files.exists("m/one.txt")
        sbx.files.remove("m")  # a missing path is no error
        with pytest.raises(Exception) as e:
            sbx.files.read("missing.txt")
        assert "not" in str(e.value).lower()

        # A signed download URL works without the access token; a tampered one does not.
        url = sbx.download_url("/home/user/dir/a.txt")
        assert httpx.get(url, headers={"E2b-Sandbox-Id": sbx.sandbox_id}).content == b"alpha"
        assert httpx.get(url).content == b"alpha", "found by its signature alone"
        up = sbx.upload_url("/home/user/up.txt")
        r = httpx.post(up, files={"file": ("up.txt", b"uploaded")}, headers={"E2b-Sandbox-Id": sbx.sandbox_id})
        assert r.status_code == 200, r.text
        assert sbx.files.read("up.txt") == "uploaded"
        bad = url.replace("signature=v1_", "signature=v1_x")
        assert httpx.get(bad, headers={"E2b-Sandbox-Id": sbx.sandbox_id}).status_code == 401
    finally:
        sbx.kill()


def test_data_plane_needs_the_sandbox_token():
    a = Sandbox.create(template="base", timeout=120)
    b = Sandbox.create(template="base", timeout=120)
    try:
        a.files.write("secret.txt", "a's")
        token_b = b._envd_access_token
        for headers in (
            {"E2b-Sandbox-Id": a.sandbox_id},
            {"E2b-Sandbox-Id": a.sandbox_id, "X-Access-Token": token_b},
            {"E2b-Sandbox-Id": a.sandbox_id, "X-Access-Token": "0" * 64},
        ):
            assert httpx.get(f"{SANDBOX_URL}/files", params={"path": "secret.txt"}, headers=headers).status_code == 401
            r = httpx.post(
                f"{SANDBOX_URL}/filesystem.Filesystem/ListDir",
                json={"path": "/home/user"},
                headers={**headers, "Connect-Protocol-Version": "1"},
            )
            assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
            r = httpx.post(f"{SANDBOX_URL}/execute", json={"code": "1"}, headers={**headers, "E2b-Sandbox-Port": "49999"})
            assert r.status_code == 401
        # The token alone routes to its own sandbox only.
        r = httpx.get(f"{SANDBOX_URL}/files", params={"path": "secret.txt"}, headers={"X-Access-Token": token_b})
        assert r.status_code == 404
        r = httpx.get(f"{SANDBOX_URL}/files", params={"path": "secret.txt"}, headers={"X-Access-Token": a._envd_access_token})
        assert r.content == b"a's"
        gone = httpx.get(f"{SANDBOX_URL}/health", headers={"E2b-Sandbox-Id": "doesnotexist"})
        assert gone.status_code == 502 and gone.json()["message"] == "The sandbox was not found"
    finally:
        a.kill()
        b.kill()


def test_run_code_keeps_state(code_sandbox):
    assert code_sandbox.run_code("x = 41").error is None
    ex = code_sandbox.run_code("x + 1")
    assert ex.text == "42"
    ex = code_sandbox.run_code("import os; print(os.environ['GREETING']); x")
    assert "".join(ex.logs.stdout) == "héllo\n", "output comes in chunks as it is written"
    assert ex.text == "41"
    assert ex.execution_count and ex.execution_count >= 3


def test_matplotlib_png(code_sandbox):
    ex = code_sandbox.run_code(
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\nplt.show()"
    )
    assert ex.error is None, ex.error
    pngs = [r.png for r in ex.results if r.png]
    assert pngs and base64.b64decode(pngs[0]).startswith(PNG_MAGIC)


def test_dataframe(code_sandbox):
    ex = code_sandbox.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
    assert ex.error is None, ex.error
    main = [r for r in ex.results if r.is_main_result]
    assert len(main) == 1
    assert "<table" in (main[0].html or "")
    assert "a" in main[0].text and "y" in main[0].text


def test_exception(code_sandbox):
    ex = code_sandbox.run_code("def f():\n    return 1 / 0\nf()")
    assert ex.error is not None
    assert ex.error.name == "ZeroDivisionError"
    assert "division by zero" in ex.error.value
    assert "f()" in ex.error.traceback


def test_contexts(code_sandbox):
    ctx = code_sandbox.create_code_context(language="python")
    assert ctx.language == "python" and ctx.cwd == "/home/user"
    code_sandbox.run_code("y = 'mine'", context=ctx)
    assert code_sandbox.run_code("y", context=ctx).text == "'mine'"
    assert code_sandbox.run_code("'y' in globals()").text == "False", "the default context is another"
    assert ctx.id in [c.id for c in code_sandbox.list_code_contexts()]
    code_sandbox.restart_code_context(ctx)
    assert code_sandbox.run_code("'y' in globals()", context=ctx).text == "False"
    code_sandbox.remove_code_context(ctx)
    assert ctx.id not in [c.id for c in code_sandbox.list_code_contexts()]


def test_javascript_context():
    sbx = CodeSandbox.create(template="multi-language", timeout=300)
    try:
        ctx = sbx.create_code_context(language="javascript")
        sbx.run_code("const greet = (n) => `hi ${n}`", context=ctx)
        ex = sbx.run_code("console.log(greet('js'))", context=ctx)
        assert "".join(ex.logs.stdout) == "hi js\n", ex
        assert "".join(sbx.run_code("console.log(1 + 1)", language="js").logs.stdout) == "2\n"
    finally:
        sbx.kill()
