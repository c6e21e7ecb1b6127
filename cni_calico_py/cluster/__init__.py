"""A cluster of nodes: the etcd datastore, block ownership, the node registry and the node daemon."""
