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


# --- rich output: the rest lives in notebook.py -----------------------------------------------

_NOTEBOOK_PATH = _DIR + "/notebook.py"
_notebook_module = None


def _notebook():
    """Rich output and cells (notebook.py), compiled the first time a request needs them: most
    executions never do, and every line compiled at start is time each of them pays."""
    global _notebook_module
    if _notebook_module is None:
        module = type(sys)("_sandbox_notebook")
        module.__file__ = _NOTEBOOK_PATH
        module.__dict__.update(
            _send=_send, _error=_error, _exit_code=_exit_code, _flush=_flush, _new_main=_new_main,
            _read_command=_read_command,
        )
        with open(_NOTEBOOK_PATH, "rb") as f:
            exec(compile(f.read(), _NOTEBOOK_PATH, "exec", dont_inherit=True), module.__dict__)
        _notebook_module = module
    return _notebook_module


def display(*objs, raw=False, metadata=None):
    """Shows each object as a rich output, as IPython's display() does: with its _repr_html_(),
    _repr_png_(), ... representations (matplotlib figures as PNG). With raw=True each object is
    a ready {MIME type: value} dict."""
    _notebook().display(*objs, raw=raw, metadata=metadata)


def _show_figures(*args, **kwargs):
    """pyplot.show(): every open figure becomes a PNG output, and is closed."""
    if "matplotlib.pyplot" in sys.modules:
        _notebook().show_figures()


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
    while tb is not None and tb.tb_frame.f_code.co_filename in (__file__, _NOTEBOOK_PATH):
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


def _main():
    command = _read_command() or ""
    op, _, arg = command.partition(" ")
    if op == "context":
        return _notebook().serve(arg)
    _os.close(_COMMANDS)
    status = _run()
    _flush()
    _exit(status)


def _exit(status):
    """Ends a `run`. What the interpreter's own exit does that user code can see is done here:
    non-daemon threads are joined, atexit callbacks run (multiprocessing, logging, tempfile and
    weakref.finalize use them), the script's globals are released (their __del__ methods run and
    files left open are flushed and closed), the objects the code left in cycles collected, and
    the streams flushed. The rest of the interpreter's teardown (freeing every module and object
    one by one) nobody sees, and is skipped: os._exit. Unless code outside the standard library
    was imported (a C extension may hold output in C stdio buffers, which only exit() flushes)
    or daemon threads still run: then the interpreter exits as usual."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    import atexit

    atexit._run_exitfuncs()
    _flush()
    if (threading is not None and threading.active_count() > 1) or any(
        name not in _BASE_MODULES and not _standard(m) for name, m in list(sys.modules.items())
    ):
        # Daemon threads still run (they must not see the globals go), or code from outside
        # the standard library was loaded: the interpreter's own exit.
        sys.exit(status)
    main = sys.modules.get("__main__")
    if main is not None:
        main.__dict__.clear()
    gc.collect()
    _flush()
    _os._exit(status)


_STDLIB = _os.path.dirname(_os.__file__) + "/"


def _standard(module):
    """Whether a module is the standard library's own (and not ctypes, whose C calls may leave
    output in C stdio buffers)."""
    name = getattr(module, "__name__", None) or ""
    if name == "_ctypes" or name.startswith("ctypes"):
        return False
    path = getattr(module, "__file__", None)
    if path is None:
        return True  # built into the interpreter
    return path.startswith(_STDLIB) and "-packages/" not in path


# The compiler's tables (its first compile() builds every AST node type: milliseconds) are made
# now, before the request.
compile("", _MAIN, "exec", dont_inherit=True)
# What the runner has made so far lives as long as the interpreter: the collector need not look
# at it again, which also keeps it out of the final collection when the interpreter exits.
gc.freeze()
_BASE_MODULES = frozenset(sys.modules)
_status = _main()
_flush()
sys.exit(_status)
