"""Hypervisor adapters behind ``fleet.core.hypervisor.Hypervisor``: ``sim`` and ``libvirt``."""
