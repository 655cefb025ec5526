"""Exit statuses of the project's command lines (``python -m sim``, ``-m compiler``,
``-m golden``, ``-m arch.asm``), one convention for all:

* 0: the run passed;
* 1: a run that failed: a mismatch, a fault, a simulator or build that broke;
* 2: refused input, before anything ran: an argument, config, file or environment value
  out of its range (as argparse's own usage errors), named with what is allowed.
"""

from __future__ import annotations

PASSED, FAILED, REFUSED = 0, 1, 2


class Refused(Exception):
    """Input a command refuses before it runs anything: `sim.__main__.main` prints
    ``error: <message>`` on stderr and exits `REFUSED`."""
