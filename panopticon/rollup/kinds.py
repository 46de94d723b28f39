"""Every kind of rollup a run rolls, each following its own stored data (see `job.Kind`).

Adding one: a module of `panopticon/rollup/` defines its `Kind` (its progress id, the stored documents that
make a window dirty, how it rolls windows) and it is listed here; `rollup_due` runs them all, in order.
"""

from __future__ import annotations

from panopticon.rollup.edges import EDGES_KIND
from panopticon.rollup.errors import ERRORS_KIND
from panopticon.rollup.job import REQUESTS, Kind

KINDS: tuple[Kind, ...] = (REQUESTS, EDGES_KIND, ERRORS_KIND)
