import sys

if sys.argv[1:2] == ["cluster-sim"]:
    from bench.cluster_sim import main as sim_main

    raise SystemExit(sim_main(sys.argv[2:]))

if sys.argv[1:2] == ["cluster"]:
    from bench.cluster import main as cluster_main

    raise SystemExit(cluster_main(sys.argv[2:]))

if sys.argv[1:2] == ["k8s"]:
    from bench.k8s import main as k8s_main

    raise SystemExit(k8s_main(sys.argv[2:]))

from bench.run import main

raise SystemExit(main())
