"""Command line: python -m training <command> ... (see --help of each command)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("training")


def _setup_logging(log_file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.engine import train

    cfg = load_config(args.config, args.set)
    if args.out:
        cfg.out_dir = args.out
    _setup_logging(str(Path(cfg.out_dir) / "train.log"))
    result = train(cfg, resume=args.resume, cache_dir=args.cache_dir, progress=not args.no_progress)
    log.info("done: best validation accuracy %.4f at epoch %d; checkpoints in %s",
             result["best_acc"], result["best_epoch"], result["out_dir"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a YAML recipe")
    t.add_argument("config", help="recipe YAML, e.g. training/configs/fer2013_resnet18_cpu.yaml")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set epochs=5 --set optim.lr=0.05")
    t.add_argument("--out", help="output directory (default: the recipe's out_dir)")
    t.add_argument("--resume", help="checkpoint to continue from (e.g. runs/x/last.pt)")
    t.add_argument("--cache-dir", default="runs/cache", help="where parsed datasets are cached")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        _setup_logging()
    return args.func(args)
