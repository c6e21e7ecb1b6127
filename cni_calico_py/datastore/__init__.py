"""The cluster's shared state behind one interface, with an etcd and a Kubernetes backend.

- `model`: typed keys and values (the node registry, block affinities,
  blocks, liveness) carrying the revision they were read at;
- `errors`: which case a failure is (already exists, conflict, not found,
  unavailable, resync needed);
- `backend`: the interface every backend implements, modelled on
  libcalico-go's backend API: create, update (compare-and-swap on the
  revision read), delete (with a revision precondition), get, list (with the
  revision to watch from), watch, and node liveness;
- `ownership`: who owns which block, with Calico's claim protocol, above
  any backend; the node daemon and an ADD that finds every block full both
  use it;
- `etcd`, `kubernetes`: the backends, the only modules that speak to a
  datastore's client. `settings.open_backend` picks one.

It sits below the IPAM because a full ADD claims a block through it.
"""
