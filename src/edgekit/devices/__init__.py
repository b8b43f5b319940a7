"""Devices: where artifacts run. Transport only; see ``base.Device``."""
from .base import Device, LocalDevice, Process

__all__ = ["Device", "LocalDevice", "Process"]
