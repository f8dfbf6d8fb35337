# Runs Python code inside the sandbox (see the executor's lang module).
#
# The executor starts this runner ahead of time, in a sandbox whose namespaces, mounts, seccomp
# filter and limits are already in place, and hands it work on file descriptor 6, one line per
# request:
#   run            run /sandbox/main.py once, as a script or a Lambda-style handler, and exit
#   context CWD    become a code context: change to CWD, answer "done" for cell 0, then serve
#   cell N         lines: run /sandbox/cell.py as cell N of a notebook and answer "done" for it
# It answers on file descriptor 3 with one JSON object per line:
#   {"type": "display", "output": {"data": {MIME: ...}, "metadata": {...}, "is_main_result": B}}
#   {"type": "report", "outcome": ...}                       how a `run` ended (below)
#   {"type": "done", "seq": N, "exit_code": C, "error": E}   a cell ended (E null or
#                                                            {"name", "value", "traceback"})
# Both descriptors are pipes whose other ends only the executor holds. Programs the code starts
# do not inherit them, and nothing printed to stdout can pose as a message; the executor checks
# every message it gets (sizes, sequence numbers) all the same.
#
# A `run` with a callable `handler` calls handler(event) or handler(event, context) and reports
#   {"outcome": "returned", "value": ...}           the handler returned a JSON value
#   {"outcome": "not_serializable", "message": ...} it returned something JSON cannot carry
#   {"outcome": "exception", "error_type": ..., "message": ..., "traceback": ...}
#   {"outcome": "exit", "code": N}                  SystemExit
#   {"outcome": "script"}                           no handler; the script ran to its end
#
# Rich output follows the IPython display protocol without needing IPython: display(obj) and a
# cell's last expression use obj._repr_mimebundle_(), _repr_html_(), _repr_png_() and the like;
# matplotlib figures that are shown, or still open when the code ends, come back as PNG.
import os as _os
import sys

_RESULTS = 3
_COMMANDS = 6
# /sandbox, the directory the executor fills with the code and its inputs.
_DIR = _os.path.dirname(_os.path.abspath(__file__))
_MAIN = _DIR + "/main.py"
for _fd in (_RESULTS, _COMMANDS):
    try:
        _os.set_inheritable(_fd, False)
    except OSError:
        pass

# Only what every request needs is imported now: a spare is started for each execution, and
# every module imported here is CPU time each execution pays (a context imports the rest when
# it starts, below).
import builtins
import gc

_CO_COROUTINE = 0x80


def _write(data):
    try:
        while data:
            data = data[_os.write(_RESULTS, data):]
    except OSError:
        pass


def _send(message):
    """Writes one message; returns the encoding error when it has no JSON form."""
    import json

    try:
        data = json.dumps(message, allow_nan=False, separators=(",", ":")).encode() + b"\n"
    except (TypeError, ValueError) as e:
        return e
    _write(data)
    return None


_pending = b""


def _read_command():
    """The next request line, or None once the executor has closed the descriptor."""
    global _pending
    while b"\n" not in _pending:
        try:
            chunk = _os.read(_COMMANDS, 4096)
        except InterruptedError:
            continue
        if not chunk:
            return None
        _pending += chunk
    line, _pending = _pending.split(b"\n", 1)
    return line.decode()


# --- rich output -----------------------------------------------------------------------------

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
    """Shows each object as a rich output, as IPython's display() does: with its _repr_html_(),
    _repr_png_(), ... representations (matplotlib figures as PNG). With raw=True each object is
    a ready {MIME type: value} dict."""
    for obj in objs:
        if raw:
            data, meta = {}, dict(metadata or {})
            for mime, value in dict(obj).items():
                _add(data, meta, mime, value)
        else:
            data, meta = _bundle(obj)
        _emit(data, meta)


def _show_figures(*args, **kwargs):
    """pyplot.show(): every open figure becomes a PNG output, and is closed."""
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


class _PyplotHook:
    """Replaces pyplot.show with _show_figures as soon as matplotlib.pyplot is imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "matplotlib.pyplot":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                module.show = _show_figures

            spec.loader.exec_module = exec_module
        return spec


builtins.display = display
sys.meta_path.insert(0, _PyplotHook())


# --- errors ----------------------------------------------------------------------------------


def _error(e):
    """Prints the traceback (the runner's own frames left out) and describes the exception."""
    import traceback

    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(e), e, tb))
    sys.stderr.write(text)
    return {"name": type(e).__name__, "value": str(e), "traceback": text}


def _exit_code(e):
    c = e.code
    if c is None:
        return 0
    if isinstance(c, int):
        return c & 0xFF
    print(c, file=sys.stderr)
    return 1


def _flush():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass


def _new_main(path, cwd):
    """A fresh module becomes __main__, so pickling, `if __name__ == "__main__"` and
    multiprocessing see the user's code, not the runner."""
    main = type(sys)("__main__")
    if path:
        main.__file__ = path
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv[:] = [path]
    sys.path[0] = cwd
    return main.__dict__


# --- run: one script or handler --------------------------------------------------------------


def _report(obj):
    """Sends a report; when it has no JSON form, reports that instead and returns False."""
    e = _send({"type": "report", **obj})
    if e is not None:
        _send({"type": "report", "outcome": "not_serializable", "message": str(e)})
        return False
    return True


class _Context:
    """The Lambda-style context object handed to two-argument handlers."""

    def __init__(self, d):
        self.aws_request_id = d["aws_request_id"]
        self.function_name = d["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = ""
        self.memory_limit_in_mb = d["memory_limit_in_mb"]
        self.log_group_name = ""
        self.log_stream_name = ""
        self._deadline_ms = d["deadline_ms"]

    def get_remaining_time_in_millis(self):
        import time

        return max(0, int(self._deadline_ms - time.time() * 1000))


def _positional_arity(fn):
    code = getattr(fn, "__code__", None)
    if code is not None and not hasattr(fn, "__self__"):
        return 2 if code.co_flags & 0x04 else code.co_argcount  # 0x04: *args
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    kinds = [p.kind for p in params]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return 2
    return sum(k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in kinds)


def _run():
    g = _new_main(_MAIN, "/workspace")
    try:
        with open(_MAIN, "rb") as f:
            code = compile(f.read(), _MAIN, "exec", dont_inherit=True)
        exec(code, g)
        handler = g.get("handler")
        if not callable(handler):
            _show_figures()
            _write(b'{"type":"report","outcome":"script"}\n')
            return 0
        import json

        with open(_DIR + "/event.json") as f:
            event = json.load(f)
        with open(_DIR + "/context.json") as f:
            context = _Context(json.load(f))
        args = (event, context) if _positional_arity(handler) >= 2 else (event,)
        value = handler(*args)
        if hasattr(value, "__await__"):
            import asyncio

            value = asyncio.run(value)
        _show_figures()
        return 0 if _report({"outcome": "returned", "value": value}) else 1
    except SystemExit as e:
        code = _exit_code(e)
        _report({"outcome": "exit", "code": code})
        return code
    except BaseException as e:
        error = _error(e)
        _show_figures()
        _report(
            {
                "outcome": "exception",
                "error_type": error["name"],
                "message": error["value"],
                "traceback": error["traceback"],
            }
        )
        return 1


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
        _show_figures()
        return 0, None
    except SystemExit as e:
        code = _exit_code(e)
        return code, (_error(e) if code else None)
    except BaseException as e:
        error = _error(e)
        _show_figures()
        return 1, error
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _context(cwd):
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


def _main():
    command = _read_command() or ""
    op, _, arg = command.partition(" ")
    if op == "context":
        return _context(arg)
    _os.close(_COMMANDS)
    return _run()


# What the runner has made so far lives as long as the interpreter: the collector need not look
# at it again, which also keeps it out of the final collection when the interpreter exits.
gc.freeze()
_status = _main()
_flush()
sys.exit(_status)
