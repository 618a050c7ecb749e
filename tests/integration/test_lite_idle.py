"""A Milvus Lite connection left idle prints nothing (pymilvus's pings vs Lite's gRPC server).

Without ``connect.LITE_GRPC_OPTIONS``, this wait drew a GOAWAY "too_many_pings" from Lite's
in-process server after ~2 minutes, and gRPC's C core printed two raw lines to stderr (checked
by hand on 2026-12-07 with the options removed; the wait is too long to run twice here).
"""

import subprocess
import sys
import textwrap

SECONDS = "170"
SCRIPT = textwrap.dedent(
    """
    import sys, time
    from milvus_ingest.store.connect import connect
    from milvus_ingest.config import MilvusSettings
    client = connect(MilvusSettings(uri=sys.argv[1]))
    client.list_collections()
    time.sleep(float(sys.argv[2]))
    print(client.list_collections(), flush=True)
    """
)


def test_an_idle_lite_connection_gets_no_goaway_and_prints_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "milvus.db"), SECONDS], capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    assert "too_many_pings" not in done.stderr and "GOAWAY" not in done.stderr, done.stderr
