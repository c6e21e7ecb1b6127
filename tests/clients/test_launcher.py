"""The agent's tests again, against the installed executables (the C launcher's thin path)."""

from tests.integration.test_agent import (  # noqa: F401 - collected here with the installed bin_dir
    bare_node,
    test_agent_in_another_namespace_declines_and_the_caller_serves_itself,
    test_agent_serves_add_check_del,
    test_bad_clients_do_not_hurt_the_agent,
    test_dead_or_hung_agent_never_fails_a_pod,
    test_killing_the_agent_mid_burst_loses_nothing,
)
