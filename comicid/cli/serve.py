"""Serve a collection in the browser: pages, identity galleries, search, and editing (merge, split, rename...).

Binds to 127.0.0.1 by default. Any other address needs --allow-remote and a token (given with --token
or generated and printed): every request must then carry it (open the printed URL once). Edits go to
the collection's edit log (COLLECTION/edits), which `comicid cluster` keeps from then on.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
from pathlib import Path

from comicid.errors import ConfigError
from comicid.store.collection import Collection
from comicid.web.app import create_app

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("collection", metavar="COLLECTION", type=Path)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host (then a token is required on every request)")
    parser.add_argument("--token", help="the token for a non-loopback bind (default: a random one, printed)")


def check_bind(host: str, allow_remote: bool, token: str | None) -> str | None:
    """The token to require: None on loopback, else the given or a fresh one; refuses unflagged remote binds."""
    loopback = host in LOOPBACK
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if loopback:
        return token
    if not allow_remote:
        raise ConfigError(f"--host {host} would expose the collection to the network; add --allow-remote "
                          "(a token is then required on every request)")
    if token is not None and len(token) < 16:
        raise ConfigError("--token must be at least 16 characters")
    return token or secrets.token_urlsafe(24)


def run(args: argparse.Namespace) -> int:
    import uvicorn  # the server is only needed by this command

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {args.port}")
    token = check_bind(args.host, args.allow_remote, args.token)
    hosts = None if args.host in LOOPBACK else ["*"]  # a remote bind is reached by names we cannot know
    app = create_app(Collection.open(args.collection), token=token, allowed_hosts=hosts)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"comicid viewer for {args.collection}: {url}  (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
