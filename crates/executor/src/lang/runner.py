# Runs one execution's Python code inside the sandbox (see the executor's lang module).
#
# The code runs as the __main__ module from /sandbox/main.py. If it defines a callable
# `handler`, the runner calls handler(event) or handler(event, context) and reports the return
# value on file descriptor 3, a pipe only the executor reads: nothing printed to stdout can
# pose as a result. The report is one JSON object:
#   {"outcome": "returned", "value": ...}          the handler returned a JSON value
#   {"outcome": "not_serializable", "message": ...} it returned something JSON cannot carry
#   {"outcome": "exception", "error_type": ..., "message": ...}
#   {"outcome": "exit", "code": N}                  SystemExit
#   {"outcome": "script"}                           no handler; the script ran to its end
import sys


def _send(data):
    try:
        while data:
            data = data[_os.write(3, data):]
        _os.close(3)
    except OSError:
        pass


def _report(obj):
    """Sends `obj`; when it has no JSON form, reports that instead and returns False."""
    import json

    try:
        data = json.dumps(obj, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        _send(json.dumps({"outcome": "not_serializable", "message": str(e)}).encode())
        return False
    _send(data)
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


def _print_exception(e):
    import traceback

    tb = e.__traceback__
    # Hide the runner's own frames: the user's traceback starts at their code.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(e), e, tb)


def _exit_code(e):
    c = e.code
    if c is None:
        return 0
    if isinstance(c, int):
        return c & 0xFF
    print(c, file=sys.stderr)
    return 1


def _run():
    # A fresh module becomes __main__, so pickling, `if __name__ == "__main__"` and
    # multiprocessing see the user's code, not the runner.
    main = type(sys)("__main__")
    main.__file__ = "/sandbox/main.py"
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    g = main.__dict__
    sys.argv[:] = ["/sandbox/main.py"]
    sys.path[0] = "/workspace"
    try:
        with open("/sandbox/main.py", "rb") as f:
            code = compile(f.read(), "/sandbox/main.py", "exec")
        exec(code, g)
        handler = g.get("handler")
        if not callable(handler):
            _send(b'{"outcome": "script"}')
            return 0
        import json

        with open("/sandbox/event.json") as f:
            event = json.load(f)
        with open("/sandbox/context.json") as f:
            context = _Context(json.load(f))
        args = (event, context) if _positional_arity(handler) >= 2 else (event,)
        value = handler(*args)
        if hasattr(value, "__await__"):
            import asyncio

            value = asyncio.run(value)
        return 0 if _report({"outcome": "returned", "value": value}) else 1
    except SystemExit as e:
        code = _exit_code(e)
        _report({"outcome": "exit", "code": code})
        return code
    except BaseException as e:
        _print_exception(e)
        _report({"outcome": "exception", "error_type": type(e).__name__, "message": str(e)})
        return 1


import os as _os

try:
    _os.set_inheritable(3, False)
except OSError:
    pass
_status = _run()
sys.stdout.flush()
sys.stderr.flush()
sys.exit(_status)
