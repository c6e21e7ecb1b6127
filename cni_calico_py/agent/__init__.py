"""The node agent: a warm process that serves CNI requests on a unix socket."""
