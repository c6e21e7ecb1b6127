"""cni-calico-py: Calico's routed pod networking as a CNI plugin."""

__version__ = "0.1.0"
