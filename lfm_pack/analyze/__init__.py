"""analyze stage: a function's source → what it reaches → the installed closure.

Also callable: `lfm_pack.analyze(fn)` is `lfm_pack.api.analyze` (see `lfm_pack/_callable.py`).
"""

from lfm_pack._callable import make_callable

make_callable(__name__, "analyze")
