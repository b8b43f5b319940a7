"""``edgekit diagnose``: where a target's int8 loses accuracy, as a table and a report."""
from __future__ import annotations

from pathlib import Path

from .app import _load, _progress


def cmd_diagnose(args) -> int:
    from ..core.diagnose import diagnose
    from ..core.diagnosis import summary, table_rows
    from ..core.specs import get_target, with_calibration
    from ..reports.fmt import plain_table

    target = with_calibration([get_target(args.target)], args.calibration)[0]
    source, data = _load(args, need_data=True)
    _progress(f"diagnosing {source.name} -> {target.name}: float and int8 side by side on {min(data.n_calib, 32)} "
              f"calibration samples" + (f", then the {args.sensitivity} worst layers each kept float"
                                        if args.sensitivity else ""))
    d, folder = diagnose(source, target, data, Path(args.out), args.sensitivity)
    for line in summary(d):
        print(line)
    print()
    print(plain_table(table_rows(d, args.top)))
    print()
    for name in ("diagnosis.html", "diagnosis.md", "diagnosis.json"):
        print(f"{name.split('.')[1] + ':':6s}{folder / name}")
    return 0
