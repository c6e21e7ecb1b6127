"""Upstream critest (cri-tools v1.37.0) against containerd with the installed plugin as its only network."""
