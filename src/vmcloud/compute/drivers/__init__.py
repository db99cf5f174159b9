"""Hypervisor drivers behind one interface (``base.ComputeDriver``)."""
