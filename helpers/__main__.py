"""Command line: python -m helpers {data fetch | data check | params | sweep | report | bench | reproduce}."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import warnings

from .config import StudyError, data_root, external_root


def _data(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers data")
    sub = parser.add_subparsers(dest="action", required=True)
    fetch = sub.add_parser("fetch", help="download the real data from the manifests and verify every file")
    fetch.add_argument("--root", default=None, help="where to put it (default: $STUDY_DATA, else data/; with "
                       "--external: $STUDY_EXTERNAL, else data-external/)")
    fetch.add_argument("--external", action="store_true", help="the independent evaluation data instead")
    fetch.add_argument("--workers", type=int, default=4)
    check = sub.add_parser("check", help="decode the whole data root and report counts and failures")
    check.add_argument("--spec", default="animals", help="dataset YAML: a name in params/datasets/ or a path")
    check.add_argument("--root", default=None)
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--strict", action="store_true", help="fail on the first file that cannot be used")
    args = parser.parse_args(argv)
    if args.action == "fetch":
        from pathlib import Path

        from .fetch import EXTERNAL_MANIFESTS, SHIPPED_MANIFESTS, fetch_data
        default = external_root() if args.external else data_root()
        report = fetch_data(Path(args.root) if args.root else default, workers=args.workers,
                            manifests=EXTERNAL_MANIFESTS if args.external else SHIPPED_MANIFESTS)
        print(json.dumps(report, indent=1))
        return 0
    from .data import describe, format_report, load_dataset, load_evaluation_set, load_spec
    spec = load_spec(args.spec, args.root)
    with warnings.catch_warnings():
        if args.json:  # the failures are in the JSON; keep stdout machine-readable
            warnings.simplefilter("ignore")
        if spec.evaluation_only:   # no split, maybe one modality: its counts per class and its failures
            summary = load_evaluation_set(spec, spec.classes, sample_rate=8000, image_size=64,
                                          progress=not args.json).summary()
            if args.strict and summary["failures"]:
                raise StudyError(f"{len(summary['failures'])} file(s) could not be used: {summary['failures'][:3]}")
            print(json.dumps(summary, indent=1))
            return 0
        summary = describe(load_dataset(spec, args.root, strict=args.strict, progress=not args.json))
    print(json.dumps(summary, indent=1) if args.json else format_report(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Import only the command asked for: `data check` should not pay for the sweep and report modules.
    modules = {"params": "schema", "sweep": "sweeps", "report": "report", "bench": "bench", "reproduce": "collect"}
    available = ["data"] + [name for name, module in modules.items()
                            if importlib.util.find_spec(f"helpers.{module}") is not None]
    if not argv or argv[0] not in available:
        print(f"usage: python -m helpers {{{' | '.join(available)}}} ...", file=sys.stderr)
        return 2
    try:
        command = _data if argv[0] == "data" else importlib.import_module(f"helpers.{modules[argv[0]]}").main
        return command(argv[1:]) or 0
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
