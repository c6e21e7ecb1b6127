"""The benchmark of calico-py against Debian's ptp + host-local: `python -m bench` (root)."""
