"""``cardiovlm train``: curriculum training of the VLM (thin: parse, call cardiovlm.training.train, print)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train the VLM on a curriculum",
        description="Train CardioVLM on a curriculum JSONL, stages in order then mixed. Runs unchanged "
        "under torchrun for several GPUs (or CPU processes).")
    parser.add_argument("--curriculum", required=True, help="curriculum JSONL written by the curriculum builder")
    parser.add_argument("--config", required=True, help="JSON or YAML file with 'model' and 'train' sections")
    parser.add_argument("--out", required=True, help="output folder: checkpoint/, train_state.pt, log.csv")
    parser.add_argument("--data", default=None, help="folder of the case folders (default: the curriculum's folder)")
    parser.add_argument("--resume", action="store_true", help="continue the run already in --out")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: CUDA if present)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:

    from cardiovlm.training.train import train_from_files
    from cardiovlm.ui.cli.logs import configure_cli_logging

    configure_cli_logging()  # the steps, losses and checkpoints as the run goes (the same rows as log.csv)

    result = train_from_files(args.curriculum, args.config, args.out, data_root=args.data, resume=args.resume,
                              device=args.device)
    from cardiovlm.tools.core.settings import external_environment

    if external_environment().rank == 0:  # under torchrun only the first process reports
        last = result.history[-1] if result.history else {}
        print(f"trained {result.steps} steps; last loss {last.get('loss', float('nan')):.4f}; "
              f"checkpoint in {args.out}/checkpoint")
    return 0
