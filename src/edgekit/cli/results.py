"""CLI commands over many results: sweep, check (the regression gate), fit, report."""
from __future__ import annotations

from pathlib import Path

from .app import _bench_opts, _load, _progress


def cmd_sweep(args) -> int:
    from dataclasses import replace

    from ..core.sweep import load_suite, run_sweep
    from ..reports import table

    suite = load_suite(Path(args.suite))
    if args.out:
        suite = replace(suite, out=args.out)
    if args.no_tracking or args.tracking_uri:
        suite = replace(suite, tracking=not args.no_tracking, tracking_uri=args.tracking_uri or suite.tracking_uri)
    result = run_sweep(suite, workers=args.workers)
    print(table(result["records"]))
    print(f"\nrecords:  {result['results']}")
    for kind, path in result["reports"].items():
        print(f"{kind + ':':10s}{path}")
    if result["tracking"]:
        print(f"mlflow:   {result['tracking'].get('tracking_uri')} (parent run {result['tracking'].get('parent_run_id')})")
    bad = [r for r in result["records"] if r.status not in ("ok", "reference")]
    return 1 if bad else 0


def cmd_check(args) -> int:
    from ..core.gate import Budgets, compare, format_result
    from ..reports import load_records as load

    budgets = Budgets(args.latency_budget / 100, args.size_budget / 100, args.accuracy_budget, args.cosine_budget)
    baseline, current = load(args.baseline), load(args.current)
    remeasured = {}
    if args.remeasure:
        from ..core.gate import pairs
        from ..core.remeasure import Rounds, remeasure, why_not

        todo = []
        for key, b, c in pairs(baseline, current):
            if not (b.ok and c.ok and b.timed and c.timed) or b.emulated or c.emulated:
                continue
            why = why_not(b, c)
            if why:
                print(f"note: {b.key_text} not re-measured ({why}): compared across runs")
            else:
                todo.append((key, b, c))
        remeasured = remeasure(todo, Rounds(rounds=args.rounds), _progress, args.device_wait)
    res = compare(baseline, current, budgets, remeasured)
    print(format_result(res))
    if res.compared == 0:
        from ..core.errors import DataError

        raise DataError("No (model, target, device) is in both the baseline and the current records.",
                        "Compare records of the same models, targets and devices.")
    return 0 if res.passed else 1


def cmd_fit(args) -> int:
    from ..core.fit import Budget, explain, judge, pick_fallback
    from ..core.pipeline import run
    from ..core.specs import parse_target_list
    from ..core.sweep import expand_targets

    budget = Budget(args.max_latency_ms, args.max_size_mb, args.max_accuracy_drop, args.min_cosine)
    if all(v is None for v in (budget.max_latency_ms, budget.max_size_mb, budget.max_accuracy_drop,
                                budget.min_cosine)):
        from ..core.errors import UserError

        raise UserError("fit needs at least one budget.", "Pass --max-latency-ms, --max-size-mb or --max-accuracy-drop.")
    from ..core.specs import default_targets

    names = [t.name for t in (parse_target_list(args.targets) if args.targets else default_targets("fit"))]
    recipes = [r for r in args.recipes.split(",") if r]
    _allow_training(recipes, args.allow_training)
    targets = expand_targets(names, recipes)
    source, data = _load(args, need_data=True)
    device = args.device or "local"
    records = run(source, data, targets, Path(args.out), _bench_opts(args), devices=[device], progress=_progress,
                  device_wait=args.device_wait)
    from ..core.pipeline import save_records

    paths = save_records(records, Path(args.out))
    winner, cands, closest = judge(records, budget)
    fallback = pick_fallback(winner, cands) if args.fallback else None
    print(explain(winner, cands, closest, budget, device, fallback, args.fallback))
    print()
    if winner is not None:
        from dataclasses import asdict

        from ..core.deploy import write_bundle

        bundle = Path(args.bundle) if args.bundle else paths["records"].parent / "deployment.json"
        paths["bundle"] = write_bundle(bundle, winner.record, fallback.record if fallback else None, asdict(budget),
                                       device, args.fallback)
    for kind, path in paths.items():
        print(f"{kind + ':':10s}{path}")
    return 0 if winner and (fallback or not args.fallback) else 1


def cmd_report(args) -> int:
    from ..reports import latest_records, load_records, write_reports

    records = list(latest_records(load_records(args.records)).values())
    src = Path(args.records)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent)
    paths = write_reports(records, out)
    for kind, path in paths.items():
        print(f"{kind + ':':10s}{path}")
    if args.track:
        from ..reports import log_records

        res = log_records(records, tracking_uri=args.tracking_uri, artifacts=list(paths.values()))
        print(f"mlflow:   {res}")
    return 0


def _allow_training(recipes: list[str], allowed: bool) -> None:
    """Training recipes cost training time: fit tries them only when told it may."""
    from ..core.specs import get_recipe
    from ..core.training import is_training

    trained = [r for r in recipes if is_training(get_recipe(r))]
    if trained and not allowed:
        from ..core.errors import UserError

        raise UserError(f"{', '.join(trained)} train the model on the data (seconds for a small CNN, minutes for a "
                        "transformer, cached after), so fit tries them only with --allow-training.",
                        "Add --allow-training, or leave them out of --recipes.")
    if trained:
        _progress(f"training recipes {', '.join(trained)}: each candidate target is tried on the changed model too; "
                  "training costs time on the first run (cached after)")
