"""The allocator lever reaches every entry point: ``import custom_nets`` keeps freed memory on glibc, and stands aside
when the environment sets the allocator or switches it off (each case a fresh Python process)."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.bundle_helpers import ROOT

SHOW = "import custom_nets; print(custom_nets.allocator.state)"


def state_in_fresh_process(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "CUSTOM_NETS_MALLOPT")}
    result = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_import_keeps_freed_memory_unless_the_environment_decides():
    environments = [{}, {"CUSTOM_NETS_MALLOPT": "off"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}]
    with ThreadPoolExecutor(max_workers=2) as pool:
        plain, switched_off, tuned = pool.map(lambda env: state_in_fresh_process(**env), environments)
    assert plain == "{'applied': True, 'reason': {'M_MMAP_THRESHOLD': 1, 'M_TRIM_THRESHOLD': 1, 'M_TOP_PAD': 1}}"
    assert "'applied': False, 'reason': 'CUSTOM_NETS_MALLOPT=off'" in switched_off
    assert "'applied': False, 'reason': 'GLIBC_TUNABLES sets the allocator'" in tuned
