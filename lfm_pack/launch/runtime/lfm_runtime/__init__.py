"""lfm_runtime: the code that travels inside every pack (stdlib only, Python 3.8+, Linux).

It runs under the *packed* interpreter on the compute node: it verifies the extracted env,
supervises the target under the resource monitor, enforces limits and writes the report. It
must never import anything outside the standard library, and must keep working on 3.8-3.13.
"""

__version__ = "0.1.0"

SCHEMA_REPORT = "lfm-pack.report/1"
SCHEMA_MANIFEST = "lfm-pack.manifest/1"
