"""`calico-py install-cni`: the plugin put on a Kubernetes node from its image.

The DaemonSet's init container runs it with the node's CNI directories
mounted: the frozen build and its links into the bin dir (build.py), a
kubeconfig for the node's side of the datastore (kubeconfig.py), and the
network config last (network.py), since the runtime reports the node Ready
as soon as a conflist appears. command.py puts them in that order.
"""
