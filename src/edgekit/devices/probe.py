"""``edgekit devices check``: what a device is and what it can run, asked of the runner itself."""
from __future__ import annotations

import time

from ..core.session import RunnerSession
from .inventory import DeviceSpec, open_device
from .lease import lease


def probe(spec: DeviceSpec, wait_s: float = 0.0) -> dict:
    t0 = time.perf_counter()
    with lease(spec.name, wait_s), open_device(spec) as device:
        with RunnerSession(device) as session:
            info = session.env()
        info.update(name=spec.name, kind=spec.kind, emulated=device.emulated, labels=dict(spec.labels),
                    python_path=device.python(), probe_s=round(time.perf_counter() - t0, 3))
    return info
