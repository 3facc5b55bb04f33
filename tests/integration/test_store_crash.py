"""kill -9 of a writer process mid-batch: the store stays consistent and the chain verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from floorctl.model import Quality, Reading
from floorctl.store.audit import AuditTrail
from floorctl.store.db import open_store

BATCH = 2_000

WRITER = textwrap.dedent(
    f"""
    import sys
    from floorctl.model import Quality, Reading
    from floorctl.store.audit import AuditTrail
    from floorctl.store.db import open_store

    store = open_store(sys.argv[1])
    trail = AuditTrail(store)
    batch = 0
    while True:
        rows = [
            Reading("dev", f"p{{i % 5}}", float(i), Quality.GOOD,
                    receive_time=1e9 + batch + i / 1e4)
            for i in range({BATCH})
        ]
        with store.transaction():
            store.write_readings(rows)
            trail.append(user_id="system", printed_name="writer", action="test.batch",
                         target="readings", new_value=batch)
        batch += 1
        print(batch, flush=True)
    """
)


def test_kill_9_mid_batch_leaves_store_consistent(tmp_path):
    path = tmp_path / "floorctl.db"
    with open_store(path) as s:
        s.write_readings([Reading("pre", "x", 1.0, Quality.GOOD, receive_time=1.0)])
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        committed = 0
        deadline = time.monotonic() + 20
        while committed < 5 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "writer died"
            committed = int(line)
        time.sleep(0.013)  # land somewhere inside a later batch
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    # the -wal file is still there: reopening recovers from it
    with open_store(path) as s:
        assert s.integrity_check() == "ok"
        trail = AuditTrail(s)
        result = trail.verify()
        assert result.ok, result.describe()
        batches = s.conn.execute("SELECT count(*) FROM audit WHERE action = 'test.batch'")
        n_batches = batches.fetchone()[0]
        assert n_batches >= committed  # everything reported committed survived
        # batches are atomic: readings and their audit entry went in together or not at all
        assert s.count_readings() == 1 + n_batches * BATCH
        assert [int(e.new_value) for e in trail.entries()] == list(range(n_batches))
        # and the store keeps working after the crash
        trail.append(user_id="system", printed_name="test", action="after", target="x")
        assert trail.verify().ok
