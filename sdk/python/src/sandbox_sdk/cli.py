"""The ``sandbox`` command: sessions, code runs, workspace files and code contexts from a shell.

Run ``sandbox --help`` (and ``sandbox COMMAND --help``). The server and key come from
``--url``/``--api-key`` or ``SANDBOX_URL``/``SANDBOX_API_KEY``; the session of ``run``,
``files`` and ``contexts`` from ``--session`` or ``SANDBOX_SESSION``. Exit codes are listed in
the package's README (and in ``EXIT_CODES_HELP`` below).
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import sys
import time
from typing import IO, Any, Callable, Dict, Iterable, List, Optional, Sequence

from .client import DEFAULT_TEMPLATE, Client, Session
from .errors import SandboxError
from .models import Execution, Result

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_CLI_ERROR = 125
EXIT_CRASHED = 137
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK}        success (run: the execution completed)
  1-255    run: the execution failed; its exit code (1 when it has none, e.g. an exception)
  {EXIT_USAGE}        bad command-line arguments
  {EXIT_TIMEOUT}      run: the execution timed out
  {EXIT_CLI_ERROR}      the request failed: the server answered with an error (its code is printed),
           could not be reached, or the URL or key is missing
  {EXIT_INTERRUPTED}      interrupted (Ctrl-C); run: the execution was cancelled
  {EXIT_CRASHED}      run: the execution crashed (killed, e.g. out of memory)"""

LANGUAGES = ("python", "javascript", "shell")
EXTENSIONS = {".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
              ".sh": "shell", ".bash": "shell"}
# Transfers at least this large get a progress bar when stderr is a terminal.
PROGRESS_THRESHOLD = 1024 * 1024


class CliError(Exception):
    """A problem with what the command was asked to do (exit code 125)."""


# -- output helpers ---------------------------------------------------------------------------


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """A progress bar on stderr for a transfer: ``label [#####-----] 2.5 MiB/5.0 MiB``.

    Shown when forced (``True``), or, left to decide (``None``), when stderr is a terminal and
    the transfer is at least ``PROGRESS_THRESHOLD`` bytes. Called with (done, total).
    """

    def __init__(self, label: str, force: Optional[bool], stream: IO[str] = sys.stderr) -> None:
        self.label = label
        self.force = force
        self.stream = stream
        self.shown = False
        self._last = 0.0

    def _enabled(self, total: Optional[int]) -> bool:
        if self.force is not None:
            return self.force
        return self.stream.isatty() and total is not None and total >= PROGRESS_THRESHOLD

    def __call__(self, done: int, total: Optional[int]) -> None:
        if not self._enabled(total):
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last < 0.1:
            return
        self._last = now
        if total:
            width = 30
            filled = int(width * min(done, total) / total)
            bar = f"[{'#' * filled}{'-' * (width - filled)}] {human_size(done)}/{human_size(total)}"
        else:
            bar = human_size(done)
        self.stream.write(f"\r{self.label} {bar}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_table(rows: Iterable[Sequence[str]], header: Sequence[str]) -> None:
    rows = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def parse_env(pairs: Optional[List[str]]) -> Dict[str, str]:
    env: Dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--env takes NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


# -- commands ---------------------------------------------------------------------------------


def need_session(client: Client, args: argparse.Namespace) -> Session:
    if not args.session:
        raise CliError("no session: pass --session ID or set SANDBOX_SESSION")
    return client.get_session(args.session)


def show_sessions(sessions: List[Session], as_json: bool) -> None:
    if as_json:
        print_json([s.raw for s in sessions])
    else:
        print_table(((s.id, s.status, s.template_id, s.created_at or "") for s in sessions),
                    ("ID", "STATUS", "TEMPLATE", "CREATED"))


def cmd_sessions_create(client: Client, args: argparse.Namespace) -> int:
    session = client.create_session(
        args.template, env_vars=parse_env(args.env) or None, timeout=args.timeout,
        cpu=args.cpu, memory=args.memory, session_id=args.id,
    )
    if args.json:
        print_json(session.raw)
    else:
        print(session.id)
    return EXIT_OK


def cmd_sessions_list(client: Client, args: argparse.Namespace) -> int:
    show_sessions(client.list_sessions(status=args.status, limit=args.limit), args.json)
    return EXIT_OK


def cmd_sessions_get(client: Client, args: argparse.Namespace) -> int:
    session = client.get_session(args.id)
    if args.json:
        print_json(session.raw)
    else:
        for key in ("id", "status", "template_id", "created_at", "last_activity_at", "timeout", "error_message"):
            if session.raw.get(key) is not None:
                print(f"{key}: {session.raw[key]}")
    return EXIT_OK


def cmd_sessions_delete(client: Client, args: argparse.Namespace) -> int:
    for session_id in args.ids:
        client.delete_session(session_id)
        if not args.json:
            print(f"deleted {session_id}")
    if args.json:
        print_json({"deleted": args.ids})
    return EXIT_OK


def execution_exit_code(execution: Execution) -> int:
    """The process exit code that stands for how an execution ended."""
    if execution.status == "completed":
        return EXIT_OK
    if execution.status == "timeout":
        return EXIT_TIMEOUT
    if execution.status == "crashed":
        return EXIT_CRASHED
    if execution.status == "cancelled":
        return EXIT_INTERRUPTED
    code = execution.exit_code
    return code if code is not None and 0 < code < 256 else 1


def show_display(result: Result) -> None:
    """A display output on the terminal: its text, or which formats it came in."""
    text = result.text or result.markdown
    if text is not None:
        sys.stdout.write(text + "\n")
    else:
        sys.stderr.write(f"[display output: {', '.join(result.formats)}]\n")
    sys.stdout.flush()


def write_flush(stream: IO[str]) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text)
        stream.flush()
    return write


def cmd_run(client: Client, args: argparse.Namespace) -> int:
    if args.file == "-":
        code = sys.stdin.read()
    else:
        with open(args.file, encoding="utf-8") as f:
            code = f.read()
    language = args.language or EXTENSIONS.get(os.path.splitext(args.file)[1].lower(), "python")
    if args.context and not args.session:
        raise CliError("--context needs --session (or SANDBOX_SESSION)")

    temporary = None
    if args.session:
        session = client.get_session(args.session)
    else:
        template = args.template or os.environ.get("SANDBOX_TEMPLATE") or (
            "multi-language" if language == "javascript" else DEFAULT_TEMPLATE)
        session = temporary = client.create_session(template, env_vars=parse_env(args.env) or None)
    try:
        streams: Dict[str, Any] = {} if args.json else {
            "on_stdout": write_flush(sys.stdout), "on_stderr": write_flush(sys.stderr),
            "on_display": show_display,
        }
        execution = session.run(code, language=language, timeout=args.timeout,
                                context_id=args.context, **streams)
    finally:
        if temporary is not None:
            temporary.delete()
    if args.json:
        print_json(execution.raw)
    elif execution.status in ("timeout", "crashed", "cancelled") and execution.error_message:
        sys.stderr.write(f"sandbox: {execution.status}: {execution.error_message}\n")
    return execution_exit_code(execution)


def cmd_files_ls(client: Client, args: argparse.Namespace) -> int:
    entries = need_session(client, args).files.list(args.path)
    if args.json:
        print_json([vars(e) for e in entries])
    else:
        print_table(
            ((e.type, "" if e.is_dir else human_size(e.size), e.modified_at[:19].replace("T", " "),
              e.path + ("/" if e.is_dir else "")) for e in entries),
            ("TYPE", "SIZE", "MODIFIED", "PATH"),
        )
    return EXIT_OK


def cmd_files_get(client: Client, args: argparse.Namespace) -> int:
    session = need_session(client, args)
    local = args.local or posixpath.basename(args.remote.rstrip("/"))
    progress = Progress(f"downloading {args.remote}", args.progress)
    try:
        if local == "-":
            size = session.files.download(args.remote, sys.stdout.buffer, on_progress=progress)
        else:
            with open(local, "wb") as f:
                size = session.files.download(args.remote, f, on_progress=progress)
    finally:
        progress.close()
    if args.json:
        print_json({"path": args.remote, "local": local, "size": size})
    elif local != "-":
        print(f"{args.remote} -> {local} ({human_size(size)})")
    return EXIT_OK


def cmd_files_put(client: Client, args: argparse.Namespace) -> int:
    session = need_session(client, args)
    if args.local == "-" and not args.remote:
        raise CliError("uploading stdin needs a REMOTE path")
    remote = args.remote or os.path.basename(args.local)
    if remote.endswith("/"):
        remote += os.path.basename(args.local)
    progress = Progress(f"uploading {remote}", args.progress)
    try:
        if args.local == "-":
            info = session.files.write(remote, sys.stdin.buffer, on_progress=progress)
        else:
            with open(args.local, "rb") as f:
                info = session.files.write(remote, f, on_progress=progress)
    finally:
        progress.close()
    if args.json:
        print_json(vars(info))
    else:
        print(f"{args.local} -> {info.path} ({human_size(info.size)})")
    return EXIT_OK


def cmd_files_rm(client: Client, args: argparse.Namespace) -> int:
    session = need_session(client, args)
    for path in args.paths:
        session.files.remove(path, recursive=args.recursive)
        if not args.json:
            print(f"removed {path}")
    if args.json:
        print_json({"removed": args.paths})
    return EXIT_OK


def show_contexts(contexts: List[Any], as_json: bool) -> None:
    if as_json:
        print_json([c.raw for c in contexts])
    else:
        print_table(((c.id, c.language, c.status, c.cwd, str(c.execution_count)) for c in contexts),
                    ("ID", "LANGUAGE", "STATUS", "CWD", "EXECUTIONS"))


def cmd_contexts_create(client: Client, args: argparse.Namespace) -> int:
    ctx = need_session(client, args).create_context(args.language, cwd=args.cwd, env_vars=parse_env(args.env))
    if args.json:
        print_json(ctx.raw)
    else:
        print(ctx.id)
    return EXIT_OK


def cmd_contexts_list(client: Client, args: argparse.Namespace) -> int:
    show_contexts(need_session(client, args).list_contexts(), args.json)
    return EXIT_OK


CONTEXT_ACTIONS = {"delete": "deleted", "restart": "restarted", "interrupt": "interrupted"}


def context_action(action: str) -> Callable[[Client, argparse.Namespace], int]:
    """The command that does ``action`` (a key of ``CONTEXT_ACTIONS``) to contexts."""

    def command(client: Client, args: argparse.Namespace) -> int:
        session = need_session(client, args)
        done = []
        for context_id in args.ids:
            ctx = session.get_context(context_id)
            getattr(ctx, action)()
            done.append(ctx.raw)
            if not args.json:
                print(f"{CONTEXT_ACTIONS[action]} {context_id}")
        if args.json:
            print_json({CONTEXT_ACTIONS[action]: [c["id"] for c in done]} if action == "delete" else done)
        return EXIT_OK

    return command


# -- argument parsing -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Options every command takes, before or after its name (SUPPRESS keeps a subcommand's
    # defaults from overwriting what was given before it).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="server URL (default: $SANDBOX_URL)")
    common.add_argument("--api-key", default=argparse.SUPPRESS, help="API key (default: $SANDBOX_API_KEY)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the server's JSON instead of text")
    with_session = argparse.ArgumentParser(add_help=False)
    with_session.add_argument("--session", "-s", default=os.environ.get("SANDBOX_SESSION"),
                              help="session id (default: $SANDBOX_SESSION)")
    with_progress = argparse.ArgumentParser(add_help=False)
    with_progress.add_argument("--progress", action="store_true", default=None,
                               help="always show a progress bar (default: for 1 MiB or more on a terminal)")
    with_progress.add_argument("--no-progress", dest="progress", action="store_false")

    parser = argparse.ArgumentParser(
        prog="sandbox", parents=[common], description="Sandbox server client.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)

    def command(sub: Any, name: str, fn: Callable[[Client, argparse.Namespace], int], help: str,
                parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help,
                                                    parents=[common, *parents])
        p.set_defaults(func=fn)
        return p

    sessions = groups.add_parser("sessions", help="create, list, show and delete sessions")
    sub = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = command(sub, "create", cmd_sessions_create, "create a session and print its id")
    p.add_argument("--template", "-t", default=os.environ.get("SANDBOX_TEMPLATE") or DEFAULT_TEMPLATE,
                   help="template (default: $SANDBOX_TEMPLATE or %(default)s)")
    p.add_argument("--env", "-e", action="append", metavar="NAME=VALUE", help="environment variable")
    p.add_argument("--timeout", type=int, help="idle timeout in seconds")
    p.add_argument("--cpu", help='CPU cores ("1", "500m")')
    p.add_argument("--memory", help='memory ("512Mi")')
    p.add_argument("--id", help="a session id of your choosing")
    p = command(sub, "list", cmd_sessions_list, "list your sessions, newest first")
    p.add_argument("--status", help="only sessions in this status (running, terminated, ...)")
    p.add_argument("--limit", type=int, default=100)
    p = command(sub, "get", cmd_sessions_get, "show a session")
    p.add_argument("id")
    p = command(sub, "delete", cmd_sessions_delete, "delete sessions with their files")
    p.add_argument("ids", nargs="+", metavar="ID")

    p = command(groups, "run", cmd_run, "run a file (or stdin) and stream its output; the exit code "
                "follows the execution's", parents=[with_session])
    p.add_argument("file", metavar="FILE", help="the code to run; - for stdin")
    p.add_argument("--language", "-l", choices=LANGUAGES,
                   help="language (default: from the file's extension, else python)")
    p.add_argument("--context", "-c", help="run as the next cell of this code context")
    p.add_argument("--timeout", type=int, default=30, help="seconds (default: %(default)s)")
    p.add_argument("--template", "-t", help="template of the temporary session made without --session "
                   "(default: $SANDBOX_TEMPLATE, else python-basic; multi-language for javascript)")
    p.add_argument("--env", "-e", action="append", metavar="NAME=VALUE",
                   help="environment variable of the temporary session")

    files = groups.add_parser("files", help="list, download, upload and delete workspace files")
    sub = files.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = command(sub, "ls", cmd_files_ls, "list files below PATH (default: all)", [with_session])
    p.add_argument("path", nargs="?", default="", metavar="PATH")
    p = command(sub, "get", cmd_files_get, "download a file", [with_session, with_progress])
    p.add_argument("remote", metavar="REMOTE")
    p.add_argument("local", nargs="?", metavar="LOCAL", help="where to write it (default: its name; - for stdout)")
    p = command(sub, "put", cmd_files_put, "upload a file", [with_session, with_progress])
    p.add_argument("local", metavar="LOCAL", help="the file; - for stdin")
    p.add_argument("remote", nargs="?", metavar="REMOTE",
                   help="where to put it (default: its name; a path ending in / keeps the name)")
    p = command(sub, "rm", cmd_files_rm, "delete files or directories", [with_session])
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--recursive", "-r", action="store_true", help="delete directories with their content")

    contexts = groups.add_parser("contexts", help="manage code contexts (long-lived interpreters)")
    sub = contexts.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = command(sub, "create", cmd_contexts_create, "start a code context and print its id", [with_session])
    p.add_argument("--language", "-l", choices=LANGUAGES, default="python")
    p.add_argument("--cwd", help="directory of the workspace it starts in")
    p.add_argument("--env", "-e", action="append", metavar="NAME=VALUE", help="environment variable")
    command(sub, "list", cmd_contexts_list, "list the session's code contexts", [with_session])
    for action, help in (("delete", "end code contexts"), ("restart", "restart code contexts, empty"),
                         ("interrupt", "interrupt the cell running in code contexts")):
        p = command(sub, action, context_action(action), help, [with_session])
        p.add_argument("ids", nargs="+", metavar="ID")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    try:
        with Client(getattr(args, "url", None), getattr(args, "api_key", None)) as client:
            code: int = args.func(client, args)
            return code
    except (SandboxError, CliError, OSError) as e:
        print(f"sandbox: error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_CLI_ERROR


if __name__ == "__main__":
    sys.exit(main())
