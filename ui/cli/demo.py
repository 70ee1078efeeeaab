"""``cardiovlm ui`` (the browser app) and ``cardiovlm demo`` (the same, opened on the demo cases)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    for name, help_text in (("ui", "serve the browser app"),
                            ("demo", "serve the browser app on 127.0.0.1 with the bundled demo cases")):
        parser = subparsers.add_parser(name, help=help_text)
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
        parser.add_argument("--port", type=int, default=7860)
        parser.add_argument("--users", default=None, help="file of 'user:password' lines enabling login")
        parser.add_argument("--insecure", action="store_true",
                            help="allow a non-loopback address without authentication")
        parser.add_argument("--max-upload-mb", type=int, default=2048, help="largest upload per session")
        parser.add_argument("--concurrency", type=int, default=2, help="questions answered at the same time")
        parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cardiovlm.ui.server import launch

    print(f"CardioVLM: research software, not for clinical use. Open http://{args.host}:{args.port}")
    launch(args.host, args.port, users_file=args.users, insecure=args.insecure, max_upload_mb=args.max_upload_mb,
           concurrency=args.concurrency)
    return 0
