"""The front door exports its API lazily, and exactly what rawprobe.api defines."""

import subprocess
import sys

import rawprobe
import rawprobe.api


def test_lazy_names_are_the_api_names() -> None:
    assert sorted(rawprobe.__all__) == sorted(rawprobe.api.__all__)
    for name in rawprobe.__all__:
        assert getattr(rawprobe, name) is getattr(rawprobe.api, name)


def test_importing_rawprobe_does_not_import_the_probes() -> None:
    code = "import sys, rawprobe; print('rawprobe.probes.scan' in sys.modules)"
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
