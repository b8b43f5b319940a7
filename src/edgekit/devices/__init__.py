"""Devices: where artifacts run. Transport only; see ``base.Device``."""
from .base import Device, DeviceInfo, LocalDevice, Process

__all__ = ["Device", "DeviceInfo", "LocalDevice", "Process"]
