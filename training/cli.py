"""Command line: python -m training <command> ... (each command has --help).

  train           train from a YAML recipe (also under torchrun for DDP)
  evaluate        metrics, confusion matrix, markdown report for a checkpoint or model version
  export          write a checkpoint as a new version of a Triton model repository
  predict         expressions of image files (face crops) as JSON
  submit          Kaggle submission (id,label) for a pixels-only test.csv
  data-info       load a dataset as a recipe would and print its splits and class counts
  bench-eval      accuracy, macro-F1 and images/s of a model version, with and without TTA
  bench-speed     training images/s for fp32, channels_last and channels_last+bf16 side by side
  bench-pipeline  training input-pipeline overhead over pure forward/backward time
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from training.progress import error_line

log = logging.getLogger("training")

DEFAULT_FER2013 = "../shared/data/fer2013/fer2013.csv.gz"
IMPROVEMENTS = (
    "Train on a GPU: keep more resolution in the stem (3x3 stride-1 conv, with or without the max-pool) "
    "and run 100-300 epochs; the published 72-74% single ResNet/VGG results use 3-10x this compute.",
    "Longer cosine schedule with weight EMA and mixup/cutmix once the model no longer underfits.",
    "Fine-tune from ImageNet weights where they are available (the Residual Masking Network's 74.14% uses them).",
    "Ensemble of differently seeded or differently shaped models (75-77% published).",
    "FER+ soft labels for training (cleaner labels; evaluate on the original FER2013 labels).",
)


def _setup_logging(log_file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


# Recipe keys that decide how a dataset is split: evaluation then holds out what training held out.
_SPLIT_KEYS = ("train_split", "val_split", "test_split", "val_fraction", "test_fraction", "keep_contempt")


def _data_splits(path: str, cache_dir: str | None, fmt: str = "fer2013_csv", extra_path: str = "",
                 recipe: dict | None = None) -> dict:
    """The named splits of a dataset (FER2013 Usage values, else train/val/test drawn as training
    draws them, with the split settings of the model's recipe)."""
    from training.config import DataConfig
    from training.data import named_splits

    data = (recipe or {}).get("data") or {}
    cfg = DataConfig(format=fmt, path=path, extra_path=extra_path, **{k: data[k] for k in _SPLIT_KEYS if k in data})
    return named_splits(cfg, cache_dir)


def _fer_split(path: str, split: str, cache_dir: str | None):
    """One split of a FER2013 CSV by name; an error naming the splits it has when it has no such one."""
    from training.data import pick_split

    return pick_split(_data_splits(path, cache_dir), split)


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.engine import train

    cfg = load_config(args.config, args.set)
    if args.out:
        cfg.out_dir = args.out
    _setup_logging(str(Path(cfg.out_dir) / "train.log"))
    result = train(cfg, resume=args.resume, cache_dir=args.cache_dir, progress=not args.no_progress,
                   stop_after=args.stop_after, init_from=args.init_from)
    log.info("done: best validation accuracy %.4f at epoch %d; checkpoints in %s",
             result["best_acc"], result["best_epoch"], result["out_dir"])
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.data import pick_split
    from training.evaluate import evaluate, load_model, markdown_report, save_confusion

    loaded = load_model(args.model)
    # Default: the dataset the model was trained on, as its recipe names it (a training job's own data).
    trained_on = (loaded.recipe.get("data") or {}) if args.data is None else {}
    args.data = args.data or trained_on.get("path") or DEFAULT_FER2013
    args.format = args.format or trained_on.get("format") or "fer2013_csv"
    args.extra_path = args.extra_path if args.extra_path is not None else trained_on.get("extra_path", "")
    splits = _data_splits(args.data, args.cache_dir, args.format, args.extra_path, loaded.recipe)
    if not args.splits:  # the held-out test split: FER2013's PrivateTest, else the drawn "test"
        test_name = ((loaded.recipe.get("data") or {}).get("test_split")) or "PrivateTest"
        args.splits = [test_name if test_name in splits else "test"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for split in args.splits:
        data = pick_split(splits, split)
        for mode in args.tta:
            label = split if mode == "none" else f"{split} + {mode} TTA"
            m = evaluate(loaded, data, tta=mode, progress=True)
            results[label] = m
            recall = "  ".join(f"{c} {100 * v['recall']:.1f}" for c, v in m["per_class"].items())
            nme = f"  landmark NME {100 * m['landmark_nme']:.2f}%" if "landmark_nme" in m else ""
            print(f"{label:28s} accuracy {100 * m['accuracy']:.2f}%  macro-F1 {100 * m['macro_f1']:.2f}%  "
                  f"{m['images_per_s']:.0f} img/s{nme}\n    recall: {recall}")
    for split in args.also:
        if split in args.splits:
            continue
        m = evaluate(loaded, pick_split(splits, split), progress=True)
        results[split] = m
        print(f"{split:28s} accuracy {100 * m['accuracy']:.2f}%  macro-F1 {100 * m['macro_f1']:.2f}%")
    name, version = args.name or loaded.name, args.version or loaded.version
    title = f"{name} v{version}" if version else name  # e.g. "fer_resnet18 v2", not "best.pt"
    first_label, first = next(iter(results.items()))
    save_confusion(first, out / "confusion_matrix.png", out / "confusion_matrix.json",
                   title=f"{title} — {first_label}, accuracy {100 * first['accuracy']:.2f}%")
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    extra = {"model": loaded.source, "data": args.data}
    if loaded.metadata is not None:
        extra["architecture"] = loaded.metadata.architecture
    extra.update(dict(kv.split("=", 1) for kv in args.note))
    (out / "report.md").write_text(markdown_report(title, results, extra, IMPROVEMENTS))
    print(f"wrote {out / 'metrics.json'}, {out / 'confusion_matrix.png'}, {out / 'report.md'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.export import export_version

    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
    calibration = None
    if args.calibrate_on:
        from training.calibrate import calibration_report
        from training.data import pick_split
        from training.evaluate import load_model

        loaded = load_model(args.checkpoint)
        splits = _data_splits(args.data, args.cache_dir)  # read once for both splits
        val, test = pick_split(splits, args.calibrate_on), pick_split(splits, args.report_on)
        calibration = calibration_report(loaded.logits(val.images, tta=args.tta), val.labels,
                                         loaded.logits(test.images, tta=args.tta), test.labels, args.uncertain_below)
        calibration.update(fitted_on=args.calibrate_on, reported_on=args.report_on)
        print(f"temperature {calibration['temperature']:.3f} (fitted on {args.calibrate_on}); {args.report_on} "
              f"ECE {100 * calibration['ece_before']:.2f}% -> {100 * calibration['ece_after']:.2f}%; "
              f"{100 * calibration['uncertain_share']:.1f}% of faces below {args.uncertain_below} are flagged uncertain")
    path = export_version(args.checkpoint, args.repo, args.name, metrics=metrics, attachments=args.attach,
                          version=args.version, tta=args.tta, calibration=calibration)
    print(path)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from training.evaluate import load_model, predict_all

    paths = list(args.paths)
    if args.list:
        paths += [line.strip() for line in Path(args.list).read_text().splitlines() if line.strip()]
    results = predict_all(load_model(args.model), paths, tta=args.tta)
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0 if all("error" not in r for r in results) else 1


def cmd_submit(args: argparse.Namespace) -> int:
    from training.data import load_fer2013_csv
    from training.evaluate import load_model, write_submission

    data = load_fer2013_csv(args.test_csv, require_labels=False)
    n = write_submission(load_model(args.model), data, args.out, tta=args.tta)
    print(f"wrote {n} predictions to {args.out}")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.data import load_splits

    cfg = load_config(args.config, args.set)
    splits = load_splits(cfg.data, cache_dir=args.cache_dir)
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        if part is None:
            continue
        counts = ", ".join(f"{c} {n}" for c, n in zip(splits.classes, part.counts()))
        print(f"{name:5s} {len(part):6d} images  {counts}")
        if part.skipped:
            print(f"      skipped {len(part.skipped)} unreadable files, e.g. {part.skipped[0]}")
    print(f"data sha256 {splits.sha256}")
    return 0


def cmd_bench_eval(args: argparse.Namespace) -> int:
    import torch

    from training.bench import bench_eval, format_table
    from training.evaluate import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    data = _fer_split(args.data, args.split, args.cache_dir)
    if args.limit:
        data = data.subset(range(min(args.limit, len(data))))
    res = bench_eval(loaded, data, tuple(args.tta), batch_size=args.batch_size)
    rows = [("TTA", "images", "accuracy", "macro-F1", "images/s")]
    for mode in args.tta:
        r = res[mode]
        rows.append((mode, str(r["n"]), f"{100 * r['accuracy']:.2f}%", f"{100 * r['macro_f1']:.2f}%",
                     f"{r['images_per_s']:.0f}"))
    print(f"{loaded.source} on {args.split} ({torch.get_num_threads()} threads)")
    print(format_table(rows))
    print(f"raw batched forward (batch {args.batch_size}): {res['raw_forward_images_per_s']:.0f} images/s")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def cmd_bench_speed(args: argparse.Namespace) -> int:
    from training.bench import bench_training_speed, format_table
    from training.config import load_config

    cfg = load_config(args.config, args.set)
    cfg.out_dir = args.out
    variants = ("fp32", "channels_last", "channels_last+bf16") + (("channels_last+bf16+compile",) if args.compile else ())
    res = bench_training_speed(cfg, variants, steps=args.steps, rounds=args.rounds, cache_dir=args.cache_dir)
    rows = [("variant", "images/s", f"x {res['baseline']}")]
    rows += [(name, f"{ips:.0f}", f"{res['speedup'][name]:.2f}x") for name, ips in res["images_per_s"].items()]
    print(f"training throughput, {res['architecture']}, batch {res['batch_size']}, {res['threads']} threads, "
          f"median of {res['rounds']} rounds of {res['steps']} steps (native bf16: {res['bf16_native']})")
    print(format_table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from training.bench import bench_pipeline
    from training.config import load_config

    cfg = load_config(args.config, args.set)
    cfg.out_dir = args.out
    res = bench_pipeline(cfg, steps=args.steps, cache_dir=args.cache_dir)
    print(f"{res['steps']} steps of batch {res['batch_size']} on {res['device']} ({res['threads']} threads)")
    print(f"training loop (index + augment + forward/backward/update): {res['loop_s']:.1f} s, "
          f"{res['loop_images_per_s']:.0f} img/s (augmentation {res['augment_s']:.2f} s)")
    print(f"pure forward/backward/update of the same batches:          {res['pure_s']:.1f} s, "
          f"{res['pure_images_per_s']:.0f} img/s")
    print(f"input-pipeline overhead: {res['overhead_pct']:+.1f}% (target within 15%)")
    print(f"estimated epoch time: {res['estimated_epoch_s'] / 60:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0 if res["overhead_pct"] <= 15.0 else 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def data_args(q: argparse.ArgumentParser, split: str = "PrivateTest") -> None:
        q.add_argument("--data", default=DEFAULT_FER2013, help="FER2013 CSV (plain or gzip)")
        q.add_argument("--cache-dir", default="runs/cache", help="where the parsed CSV is cached")

    t = sub.add_parser("train", help="train a model from a YAML recipe")
    t.add_argument("config", help="recipe YAML, e.g. training/configs/fer2013_resnet18_cpu.yaml")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set epochs=5 --set optim.lr=0.05")
    t.add_argument("--out", help="output directory (default: the recipe's out_dir)")
    t.add_argument("--resume", help="checkpoint to continue from (e.g. runs/x/last.pt)")
    t.add_argument("--init-from", help="start from this checkpoint's weights with a new schedule (SGDR-style restart)")
    t.add_argument("--stop-after", type=int, help="stop after N epochs of this call (continue with --resume)")
    t.add_argument("--cache-dir", default="runs/cache", help="where parsed datasets are cached")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics, confusion matrix and report on a dataset's held-out splits")
    e.add_argument("model", help="checkpoint (.pt), version dir (models/x/1) or model dir (latest version)")
    data_args(e)
    e.set_defaults(data=None)  # the model's own dataset (its recipe's data section), else FER2013
    e.add_argument("--format", help="layout of --data, any data.format of a recipe (docs/training.md): its "
                   "held-out test split is drawn as training drew it (default: the recipe's, else fer2013_csv)")
    e.add_argument("--extra-path", help="second path of the format (FER+ votes, AffectNet images, ...); "
                   "default: the recipe's")
    e.add_argument("--splits", nargs="+", help="splits to evaluate on: FER2013 Usage values, else train/val/test "
                   "as training drew them (default: the held-out test split, PrivateTest on FER2013)")
    e.add_argument("--tta", nargs="+", default=["none"], choices=["none", "flip", "tencrop"],
                   help="test-time augmentation modes, each evaluated on every --splits split")
    e.add_argument("--also", nargs="*", default=[], help="further splits, evaluated without TTA (e.g. PublicTest)")
    e.add_argument("--out", required=True, help="folder for metrics.json, confusion_matrix.*, report.md")
    e.add_argument("--name", help="model name in the report (default: the model's own)")
    e.add_argument("--version", type=int,
                   help="version shown in the report (default: the model's; a checkpoint has none)")
    e.add_argument("--note", action="append", default=[], metavar="KEY=VALUE", help="extra line in the report")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="export a checkpoint as a new model-repository version")
    x.add_argument("checkpoint")
    x.add_argument("--repo", default="models", help="model repository root")
    x.add_argument("--name", help="model name (default: the recipe's name)")
    x.add_argument("--version", type=int, help="version number (default: next free)")
    x.add_argument("--metrics", help="metrics.json from `evaluate` to store in metadata.json")
    x.add_argument("--attach", nargs="*", default=[], help="files copied into the version (report, PNGs)")
    x.add_argument("--tta", default="none", choices=["none", "flip"], help="test-time augmentation built into model.pt")
    x.add_argument("--calibrate-on", metavar="SPLIT", help="fit the score temperature on this split (PublicTest)")
    x.add_argument("--report-on", default="PrivateTest", metavar="SPLIT", help="split the calibration error is reported on")
    x.add_argument("--uncertain-below", type=float, default=0.5,
                   help="faces whose calibrated top score is below this are flagged uncertain")
    data_args(x)
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("predict", help="expression of each image file (face crops), as JSON")
    r.add_argument("model")
    r.add_argument("paths", nargs="*")
    r.add_argument("--list", help="text file with one image path per line")
    r.add_argument("--tta", default="none", choices=["none", "flip", "tencrop"])
    r.add_argument("--out", help="write JSON here instead of stdout")
    r.set_defaults(func=cmd_predict)

    s = sub.add_parser("submit", help="Kaggle submission file for a pixels-only test.csv")
    s.add_argument("model")
    s.add_argument("test_csv")
    s.add_argument("--out", default="submission.csv")
    s.add_argument("--tta", default="none", choices=["none", "flip", "tencrop"])
    s.set_defaults(func=cmd_submit)

    d = sub.add_parser("data-info", help="load a recipe's dataset and print splits and class counts")
    d.add_argument("config")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    d.add_argument("--cache-dir", default="runs/cache")
    d.set_defaults(func=cmd_data_info)

    b = sub.add_parser("bench-eval", help="accuracy, macro-F1, images/s with and without TTA")
    b.add_argument("model", help="version dir (models/fer_resnet18/1), model dir or checkpoint")
    data_args(b)
    b.add_argument("--split", default="PrivateTest")
    b.add_argument("--tta", nargs="+", default=["none", "flip", "tencrop"], choices=["none", "flip", "tencrop"])
    b.add_argument("--batch-size", type=int, default=256)
    b.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    b.add_argument("--limit", type=int, default=0, help="only the first N images")
    b.add_argument("--json", help="also write the results here")
    b.set_defaults(func=cmd_bench_eval)

    v = sub.add_parser("bench-speed", help="training images/s: fp32, channels_last, channels_last+bf16 side by side")
    v.add_argument("config", nargs="?", default="training/configs/fer2013_resnet18_cpu.yaml")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    v.add_argument("--steps", type=int, default=20, help="training steps per variant and round")
    v.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median counts")
    v.add_argument("--compile", action="store_true", help="also time torch.compile on top of channels_last+bf16")
    v.add_argument("--cache-dir", default="runs/cache")
    v.add_argument("--out", default="runs/bench-speed")
    v.add_argument("--json", help="also write the results here")
    v.set_defaults(func=cmd_bench_speed)

    q = sub.add_parser("bench-pipeline", help="input-pipeline overhead over pure forward/backward time")
    q.add_argument("config", nargs="?", default="training/configs/fer2013_resnet18_cpu.yaml")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    q.add_argument("--steps", type=int, default=40, help="training steps to time")
    q.add_argument("--cache-dir", default="runs/cache")
    q.add_argument("--out", default="runs/bench-pipeline")
    q.add_argument("--json", help="also write the results here")
    q.set_defaults(func=cmd_bench_pipeline)
    return p


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input (data, paths, recipes, models), not a bug: one line, not a traceback.
    (DataError and the image loaders' errors are ValueErrors.)"""
    import pickle

    import yaml

    errors = (ValueError, FileNotFoundError, IsADirectoryError, yaml.YAMLError, pickle.UnpicklingError)
    export = sys.modules.get("training.export")  # not imported: no ExportError can have been raised
    return errors + ((export.ExportError,) if export else ())


def _leave_error(command: str, exc: BaseException) -> None:
    """Where TRAINING_ERROR_FILE names a file (a Kubernetes Job sets the container's termination
    message, /dev/termination-log), the cause goes there too: the pod's status then says it."""
    path = os.environ.get("TRAINING_ERROR_FILE")
    if path:
        try:
            Path(path).write_text(error_line(f"{command}: {exc}") + "\n", encoding="utf-8")
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        _setup_logging()
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - sorted below: only the expected kinds are caught
        if not isinstance(exc, _expected_errors()):
            raise
        print(error_line(exc), file=sys.stderr)  # one line, whatever the message holds
        _leave_error(args.command, exc)
        return 2
