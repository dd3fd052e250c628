"""pack stage: an analysis → a verified, relocatable archive and its launcher.

Also callable: `lfm_pack.pack(fn, dir)` is `lfm_pack.api.pack` (see `lfm_pack/_callable.py`).
"""

from lfm_pack._callable import make_callable

make_callable(__name__, "pack")
