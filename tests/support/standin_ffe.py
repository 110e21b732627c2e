"""``ffe`` with stand-in work (``jobwork``) for the job kinds named in ``FFE_TEST_WORK``
(``backtest=mark,sweep=stubborn``), for tests that start ``ffe worker`` as a process of its
own: ``python tests/support/standin_ffe.py worker ...``. Run as a script, its folder is on
``sys.path``, and so on the job processes' too (they are sent the worker's)."""

from __future__ import annotations

import os

import jobwork

from ffe.cli.app import main
from ffe.service.jobs.work import WORK

for pair in filter(None, os.environ.get("FFE_TEST_WORK", "").split(",")):
    kind, _, name = pair.partition("=")
    WORK[kind] = getattr(jobwork, name)

if __name__ == "__main__":
    main()
