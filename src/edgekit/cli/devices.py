"""CLI command ``edgekit devices``: list, check (probe) and set up devices."""
from __future__ import annotations

import json

from .app import _progress


def _runtime_names(name: str) -> list[str]:
    """A runtime by its name or alias, or every runtime of a backend (the family a target names)."""
    from ..backends import backends, get_runtime
    from ..core.errors import UnknownName

    try:
        return [get_runtime(name).name]
    except UnknownName:
        if name in backends() and backends()[name].runtimes:
            return [r.name for r in backends()[name].runtimes]
        raise


def cmd_devices(args) -> int:
    from ..devices.inventory import get_spec, inventory_path, load_inventory

    if args.devices_cmd == "list":
        where = inventory_path()
        print(f"devices ({where or 'no devices.toml found; only this host'}):")
        for spec in load_inventory().values():
            addr = f"{spec.user + '@' if spec.user else ''}{spec.host}:{spec.port}" if spec.kind == "ssh" else ""
            labels = ", ".join(f"{k}={v}" for k, v in spec.labels.items())
            print(f"  {spec.name:16s} {spec.kind:11s} {addr:28s} {labels}")
        return 0
    if args.devices_cmd == "check":
        from ..devices.probe import probe

        info = probe(get_spec(args.name))
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        print(f"{args.name} ({info['kind']}{', emulated' if info['emulated'] else ''}): {info['os']} {info['arch']}, "
              f"{info['cpu']} x{info['cpu_count']}, {info['mem_total_kb'] / 1024 / 1024:.1f} GiB, "
              f"Python {info['python']} ({info['python_path']}), numpy {info['numpy']}")
        from ..backends import runtimes

        for rt in runtimes():
            v = info["runtimes"].get(rt)
            print(f"  {rt:12s} {v or 'not installed: edgekit devices setup ' + args.name + ' --runtime ' + rt}")
        return 0
    from ..devices.setup import setup

    from ..backends import get_runtime, runtimes

    wanted = [name for r in args.runtime for name in _runtime_names(r)] or list(runtimes())
    result = setup(get_spec(args.name), wanted, progress=_progress, required=bool(args.runtime))
    print(json.dumps(result, indent=2))
    return 0
