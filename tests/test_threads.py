"""CPU thread settings: the environment a child process starts with and the intra-op count of this one."""

import pytest

from falcon_h1r_lib import threads


def test_thread_env_sets_and_unsets_the_wait_policy_without_touching_the_base():
    base = {"PATH": "/bin", "OMP_WAIT_POLICY": "ACTIVE"}
    env = threads.thread_env(2, "PASSIVE", base)
    assert env == {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2"}
    assert base["OMP_WAIT_POLICY"] == "ACTIVE"  # a copy
    assert "OMP_WAIT_POLICY" not in threads.thread_env(None, "default", base)
    assert "OMP_NUM_THREADS" not in threads.thread_env(None, None, base)


@pytest.mark.parametrize("bad", [{"wait_policy": "SPIN"}, {"num_threads": 0}, {"num_threads": True},
                                 {"num_threads": 1.5}])
def test_bad_thread_settings_are_named(bad):
    with pytest.raises(ValueError, match="thread_env: (wait_policy|num_threads)"):
        threads.thread_env(**{"num_threads": 1, "wait_policy": "PASSIVE", **bad}, base={})


def test_set_threads_sets_and_reports_the_count():
    import torch

    before = torch.get_num_threads()
    try:
        assert threads.set_threads(1) == 1 == torch.get_num_threads()
        assert threads.set_threads(None) == 1
        with pytest.raises(ValueError, match="set_threads: num_threads"):
            threads.set_threads(0)
    finally:
        torch.set_num_threads(before)
