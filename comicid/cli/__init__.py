"""The `comicid` command: a thin shell over the library.

Each command lives in its own module of this package with ``add_arguments(parser)``, ``run(args) -> int``
and a docstring whose first line is its help. Errors a user can cause (:class:`ComicidError`) print as
one line on stderr and exit 1; an interrupt exits 130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from comicid import __version__
from comicid.errors import ComicidError

#: command name -> module under comicid.cli (``import`` is a Python keyword, hence ``import_``).
COMMANDS: dict[str, str] = {
    "import": "import_",
    "synth": "synth",
    "embed": "embed",
    "cluster": "cluster",
    "search": "search",
    "index": "index",
    "evaluate": "evaluate",
    "report": "report",
    "train": "train",
    "quantize": "quantize",
    "demo": "demo",
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


def main(argv: Sequence[str] | None = None) -> int:
    from comicid.runtime import tune_allocator

    tune_allocator()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ComicidError as error:
        print(f"comicid {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"comicid {args.command}: interrupted; finished work is saved, run again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
