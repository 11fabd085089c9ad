"""The local backend's torch thread rule (models/local.py, `_configure_threads`): all cores this
process may run on but one, at least one; POSTTRAIN_TORCH_THREADS, then OMP_NUM_THREADS, override
it. Each case runs in a fresh interpreter, since the rule applies once per process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = ("import torch; from posttrain.models.local import _configure_threads; "
          "torch.set_num_threads(7); _configure_threads(); _configure_threads(); print(torch.get_num_threads())")


def _threads(**env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if k not in ("POSTTRAIN_TORCH_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_all_cores_but_one_by_default():
    assert _threads() == max(1, len(os.sched_getaffinity(0)) - 1)


@pytest.mark.parametrize("env, expected", [
    ({"POSTTRAIN_TORCH_THREADS": "2"}, 2),
    ({"POSTTRAIN_TORCH_THREADS": "3", "OMP_NUM_THREADS": "1"}, 3),
    ({"OMP_NUM_THREADS": "1"}, 7),  # left to torch and OpenMP: the rule does not touch it
])
def test_the_environment_overrides_the_rule(env, expected):
    assert _threads(**env) == expected
