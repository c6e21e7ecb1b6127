"""The kernel side of a pod attachment, through netlink (pyroute2)."""
