import sys

if sys.argv[1:2] == ["cluster"]:
    from bench.cluster import main as cluster_main

    raise SystemExit(cluster_main(sys.argv[2:]))

from bench.run import main

raise SystemExit(main())
