# The parts of the Python runner (runner.py) that not every request needs: rich output (the
# IPython display protocol) and code contexts (notebook cells). runner.py compiles this file the
# first time a request needs it and provides _send, _error, _exit_code, _flush, _new_main and
# _read_command; see runner.py for the protocol.
import gc
import os as _os
import sys

_DIR = _os.path.dirname(__file__)
_CO_COROUTINE = 0x80

_REPR_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
    ("application/pdf", "_repr_pdf_"),
)
_BINARY = ("image/png", "image/jpeg", "application/pdf")


def _warn(what, e):
    print("display: %s failed: %s: %s" % (what, type(e).__name__, e), file=sys.stderr)


def _encode(mime, value):
    """The JSON form of one representation; raises when it has none."""
    import base64
    import json

    if mime in _BINARY:
        return value if isinstance(value, str) else base64.b64encode(value).decode("ascii")
    if mime == "application/json" or mime.endswith("+json"):
        json.dumps(value, allow_nan=False)
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise TypeError("%s must be str, not %s" % (mime, type(value).__name__))
    return value


def _add(data, metadata, mime, value):
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        value, meta = value
        metadata[mime] = meta
    try:
        data[mime] = _encode(mime, value)
    except Exception as e:
        metadata.pop(mime, None)
        _warn(mime, e)


def _figure(obj):
    module = sys.modules.get("matplotlib.figure")
    return module is not None and isinstance(obj, module.Figure)


def _bundle(obj):
    """Every representation `obj` offers: {MIME: value}, {MIME: metadata}."""
    data, metadata = {}, {}
    if _figure(obj):
        try:
            import base64
            import io

            buf = io.BytesIO()
            obj.savefig(buf, format="png", bbox_inches="tight")
            data["image/png"] = base64.b64encode(buf.getvalue()).decode("ascii")
        except Exception as e:
            _warn("rendering a figure", e)
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            plt.close(obj)  # shown once: not again when open figures are collected
    elif not isinstance(obj, type):
        try:
            bundle = getattr(obj, "_repr_mimebundle_", None)
            if callable(bundle):
                found = bundle(include=None, exclude=None)
                if isinstance(found, tuple) and len(found) == 2:
                    found, meta = found
                    metadata.update(meta or {})
                for mime, value in (found or {}).items():
                    _add(data, metadata, mime, value)
        except Exception as e:
            _warn("_repr_mimebundle_", e)
        for mime, name in _REPR_METHODS:
            if mime in data:
                continue
            try:
                method = getattr(obj, name, None)
                value = method() if callable(method) else None
            except Exception as e:
                _warn(name, e)
                continue
            if value is not None:
                _add(data, metadata, mime, value)
    if "text/plain" not in data:
        try:
            data["text/plain"] = repr(obj)
        except Exception as e:
            _warn("repr", e)
            data["text/plain"] = object.__repr__(obj)
    return data, metadata


def _emit(data, metadata, main=False):
    output = {"data": data, "metadata": metadata, "is_main_result": main}
    if _send({"type": "display", "output": output}) is not None:
        output["metadata"] = {}
        _send({"type": "display", "output": output})


def display(*objs, raw=False, metadata=None):
    """The runner's display(): each object as a rich output."""
    for obj in objs:
        if raw:
            data, meta = {}, dict(metadata or {})
            for mime, value in dict(obj).items():
                _add(data, meta, mime, value)
        else:
            data, meta = _bundle(obj)
        _emit(data, meta)


def show_figures():
    """Every open figure becomes a PNG output, and is closed."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    try:
        figures = [plt.figure(n) for n in plt.get_fignums()]
    except Exception as e:
        _warn("collecting figures", e)
        return
    for fig in figures:
        display(fig)
    plt.close("all")


# --- context: one cell after another ---------------------------------------------------------

_loop = None


def _await(awaitable):
    """Runs a cell that awaits at its top level on the context's one event loop."""
    global _loop
    if _loop is None:
        import asyncio

        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    return _loop.run_until_complete(awaitable)


def _execute(source, name, ns):
    """Runs a cell; the value of its last statement when that is an expression (and the cell
    does not end with ';', which keeps it quiet, as in Jupyter), else None."""
    import ast

    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = compile(source, name, "exec", ast.PyCF_ONLY_AST | flags, dont_inherit=True)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    value = None
    for node, mode in ((tree, "exec"), (last, "eval")):
        if node is None:
            continue
        code = compile(node, name, mode, flags, dont_inherit=True)
        value = eval(code, ns)
        if code.co_flags & _CO_COROUTINE:
            value = _await(value)
    if last is None or source.rstrip().endswith(";"):
        return None
    return value


def _cell(seq, ns):
    """Runs cell `seq`; its exit code (0, 1 for an exception, a SystemExit's code) and error.
    Only here may SIGINT interrupt (KeyboardInterrupt); between cells it is ignored."""
    import linecache
    import signal

    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with open(_DIR + "/cell.py", "rb") as f:
            source = f.read().decode("utf-8", "replace")
        name = "<cell-%d>" % seq
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        value = _execute(source, name, ns)
        if value is not None:
            ns["_"] = value
            _emit(*_bundle(value), main=True)
        show_figures()
        return 0, None
    except SystemExit as e:
        code = _exit_code(e)
        return code, (_error(e) if code else None)
    except BaseException as e:
        error = _error(e)
        show_figures()
        return 1, error
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def serve(cwd):
    """Becomes a context working in `cwd`: answers cell 0, then runs each `cell N` request."""
    # Everything a cell needs, imported before sys.path names the context's directory (where a
    # user's json.py cannot stand in for the real one), and frozen with the rest.
    import ast
    import base64
    import io
    import json
    import linecache
    import signal
    import traceback

    del ast, base64, io, json, linecache, traceback
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _os.chdir(cwd)
    except OSError as e:
        error = {"name": type(e).__name__, "value": str(e), "traceback": ""}
        _send({"type": "done", "seq": 0, "exit_code": 1, "error": error})
        return 1
    ns = _new_main("", cwd)
    _send({"type": "done", "seq": 0, "exit_code": 0, "error": None})
    while True:
        command = _read_command()
        if command is None:
            return 0
        op, _, arg = command.partition(" ")
        if op != "cell" or not arg.isdigit():
            continue
        try:
            code, error = _cell(int(arg), ns)
        except KeyboardInterrupt as e:  # arrived while the cell was being wound up
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            code, error = 1, _error(e)
        _flush()
        _send({"type": "done", "seq": int(arg), "exit_code": code, "error": error})
