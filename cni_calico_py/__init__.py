"""cni-calico-py: Calico's routed pod networking as a CNI plugin."""

__version__ = "0.2.0"
