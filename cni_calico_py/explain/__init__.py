"""`calico-py explain SRC DST`: one packet's path from pod to pod, hop by hop, from live state.

kernel.py asks the kernel (pyroute2) what it would do; cluster_view.py reads
what the datastore and BIRD say; walk.py follows the packet and names the
first hop that is wrong; report.py prints it for people or as JSON.
"""
