"""The ``hpx-analyze`` command line (one module per command, assembled in :mod:`.main`).

The folder is installed as ``hpx_analysis.cli``; imported under any other name (``import cli``
from the repository root) it refuses, so there is never a second copy of the commands.
"""

if __name__ != "hpx_analysis.cli":
    raise ImportError(f"import hpx_analysis.cli, not {__name__}: the folder cli/ is installed as hpx_analysis.cli")
