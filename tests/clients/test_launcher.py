"""The agent's tests again, against the installed executables (the C launcher's thin path)."""

from tests.integration.test_agent import (  # noqa: F401 - collected here with the installed bin_dir
    bare_node,
    test_a_caller_with_mounts_of_its_own_is_served,
    test_a_request_too_big_for_the_agent_is_served_by_its_caller,
    test_a_request_whose_caller_left_does_not_run_after_the_del,
    test_a_request_whose_worker_dies_after_go_is_not_run_again,
    test_agent_in_another_namespace_declines_and_the_caller_serves_itself,
    test_agent_serves_add_check_del,
    test_bad_clients_do_not_hurt_the_agent,
    test_dead_or_hung_agent_never_fails_a_pod,
    test_environment_bytes_reach_the_worker_as_the_cold_path_reads_them,
    test_killing_the_agent_mid_burst_loses_nothing,
    test_trickling_clients_do_not_stall_requests,
)
