"""calico-py-ipam: hands out the node block's addresses (see README.md)."""
