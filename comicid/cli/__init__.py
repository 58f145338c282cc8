"""The `comicid` command: a thin shell over the library.

Each command lives in its own module of this package with ``add_arguments(parser)``, ``run(args) -> int``
and a docstring whose first line is its help. Errors a user can cause (:class:`ComicidError`) print as
one line on stderr and exit 1; an interrupt exits 130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import sys
from collections.abc import Sequence

from comicid._version import __version__
from comicid.cli.common import printable
from comicid.errors import ComicidError
from comicid.runtime import tune_allocator

#: command name -> module under comicid.cli (``import`` is a Python keyword, hence ``import_``).
COMMANDS: dict[str, str] = {
    "import": "import_",
    "synth": "synth",
    "embed": "embed",
    "cluster": "cluster",
    "search": "search",
    "index": "index",
    "evaluate": "evaluate",
    "evaluate-detection": "evaluate_detection",
    "report": "report",
    "train": "train",
    "quantize": "quantize",
    "demo": "demo",
    "export": "export",
    "bank": "bank",
    "serve": "serve",
}


def _available_commands() -> dict[str, object]:
    modules = {}
    for name, module_name in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(f"comicid.cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"comicid.cli.{module_name}":
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comicid",
        description="Who is who in comics: import character crops or pages, embed them, cluster them "
                    "into identities, search and evaluate.")
    parser.add_argument("--version", action="version", version=f"comicid {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _available_commands().items():
        doc = (module.__doc__ or "").strip()
        summary = doc.splitlines()[0] if doc else name
        sub = commands.add_parser(name, help=summary, description=doc,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                         help="no progress bars or summaries")
        module.add_arguments(sub)  # type: ignore[attr-defined]
        sub.set_defaults(handler=module.run)  # type: ignore[attr-defined]
    return parser


#: Operating-system errors caused by the user's disk or paths (disk full, read-only, permissions, a
#: file where a folder should be): one line and exit 1, like a ComicidError; any other OSError is a bug.
USER_OS_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR,
                            errno.ENOTDIR, errno.ENAMETOOLONG, errno.ENOENT, errno.EEXIST, errno.EMFILE})


def _fail(command: str, message: str) -> int:
    """Print one line (control characters escaped, so a hostile name cannot drive the terminal)."""
    print(f"comicid {command}: error: {printable(message)}", file=sys.stderr)
    return 1


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that Python's exit flush raises nothing."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    tune_allocator()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ComicidError as error:
        return _fail(args.command, str(error))
    except BrokenPipeError:
        # The reader went away (`comicid search ... | head -1`): nothing is wrong with the work.
        _silence_stdout()
        return 1
    except OSError as error:
        if error.errno not in USER_OS_ERRORS:
            raise
        return _fail(args.command, f"{error.strerror or error}" + (f": '{error.filename}'" if error.filename else ""))
    except RecursionError:
        return _fail(args.command, "the input is nested too deeply to read")
    except KeyboardInterrupt:
        print(f"comicid {args.command}: interrupted; finished work is saved, run again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
