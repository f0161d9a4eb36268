"""A worker sweep in one process: each run's Ray cluster is its own (kept apart from test_distributed.py, whose
module-wide cluster would hide what this checks)."""
import pytest
from test_distributed import _bisect, _record

ray = pytest.importorskip("ray")


def test_runs_of_other_worker_counts_in_one_process_each_get_a_cluster_of_their_size(planted_dir, tmp_path):
    """A worker sweep in one process (bench/bisect_scale.py): the second run once found the first run's cluster, too
    small for its actors, and waited forever; each run now starts, sizes and shuts down its own."""
    assert not ray.is_initialized()
    seq = _bisect(planted_dir, "two_culprits", tmp_path / "seq")
    one = _bisect(planted_dir, "two_culprits", tmp_path / "one", workers=1, worker_cpus=1)
    assert not ray.is_initialized()  # shut down with its actors
    two = _bisect(planted_dir, "two_culprits", tmp_path / "two", workers=2, worker_cpus=1)
    assert seq.pins and one.pins == two.pins == seq.pins
    assert _record(tmp_path / "one") == _record(tmp_path / "two") == _record(tmp_path / "seq")

