"""Imports into a fleet: hosts (processes, each its own COSTLINE_HOME) share a PostgreSQL
control plane and a SeaweedFS bucket that holds the usage log. Overlapping files imported
on two hosts at once count their common rows once (real processes, PostgreSQL, bucket)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from test_import_crash import rows, write

from core.errors import UsageLogUnavailable
from core.importer import import_csv, read_preview
from core.types import PICO
from core.usage import Reader, shipper_for
from tests.child_death import die_with_parent
from tests.servers.ports import free_port
from tests.servers.seaweed import SeaweedS3

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]
IMPORT = """
import sys
from datetime import UTC, datetime
from core.importer import import_csv, read_preview

path = sys.argv[1]
r = import_csv(path, read_preview(path).mapping, now=datetime(2026, 11, 23, 12, tzinfo=UTC))
print(r.imported, r.duplicates)
"""


@pytest.fixture
def fleet(
    weed: SeaweedS3, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The fleet's shared settings: a fresh bucket and a fresh PostgreSQL control plane."""
    name = f"costline-{uuid.uuid4().hex[:10]}"
    weed.create_bucket(name)
    env = {**weed.env(f"{name}/usage"), "COSTLINE_CONTROL_URL": pg_url}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return env


def logged(home: Path) -> list[tuple[object, int, int]]:
    """Every imported row in the bucket, as a host that imported nothing reads it."""
    with Reader(home) as rd:
        return sorted((e.ts, e.input_tokens, int(e.cost_usd * PICO)) for e in rd.fetch())


def test_overlapping_files_imported_on_two_hosts_at_once_count_common_rows_once(
    tmp_path: Path, fleet: dict[str, str]
) -> None:
    """Two hosts import overlapping files (rows 0-399 and 200-599) at the same moment. On
    main the import lock was a file in each host's COSTLINE_HOME and an import's segment
    waited in its host's outbox, so neither host's duplicate check saw the other's rows:
    the 200 common rows were logged twice (800 rows)."""
    a = write(tmp_path / "a.csv", rows(0, 400))
    b = write(tmp_path / "b.csv", rows(200, 600))
    homes = {n: tmp_path / f"host{n}" for n in "AB"}
    procs = {}
    for n, path in (("A", a), ("B", b)):
        homes[n].mkdir()
        env = {**os.environ, **fleet, "COSTLINE_HOME": str(homes[n]), "PYTHONPATH": str(ROOT)}
        procs[n] = subprocess.Popen(
            [sys.executable, "-c", die_with_parent() + IMPORT, str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    got = {}
    for n, p in procs.items():
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        imported, duplicates = map(int, out.split()[-2:])
        got[n] = (imported, duplicates)
    for home in homes.values():  # whatever still waits in an outbox reaches the bucket
        shipper = shipper_for(home)
        assert shipper is not None and shipper.drain(60), shipper.status()
    reader_home = tmp_path / "console"
    reader_home.mkdir()
    found = logged(reader_home)
    print(f"imported, duplicates: {got}; {len(found)} rows in the bucket")
    assert sorted(got.values()) == [(200, 200), (400, 0)]
    assert found == rows(0, 600)


def test_an_import_the_bucket_lacks_refuses_the_next_on_another_host(
    tmp_path: Path, fleet: dict[str, str]
) -> None:
    """Host A imported while the bucket was away from it: its rows wait in A's outbox. Host B
    cannot check its rows against them: it refuses, naming A's import and host, and writes
    nothing; once A's outbox has shipped, B imports only its new rows."""
    a_home, b_home = tmp_path / "hostA", tmp_path / "hostB"
    a_home.mkdir()
    b_home.mkdir()
    a = write(tmp_path / "a.csv", rows(0, 50))
    b = write(tmp_path / "b.csv", rows(30, 80))
    away = f"http://127.0.0.1:{free_port()}"  # nobody listens: the bucket is away from host A
    env = {**os.environ, "AWS_ENDPOINT_URL": away, "COSTLINE_HOME": str(a_home)}
    first = subprocess.run(
        [sys.executable, "-c", die_with_parent() + IMPORT, str(a)],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[-2:] == ["50", "0"]
    with pytest.raises(UsageLogUnavailable, match=r"a\.csv.*outbox of host"):
        import_csv(b, read_preview(b).mapping, home=b_home)
    shipper = shipper_for(a_home)
    assert shipper is not None and shipper.drain(60), shipper.status()
    second = import_csv(b, read_preview(b).mapping, home=b_home)
    assert (second.imported, second.duplicates) == (30, 20)
    reader_home = tmp_path / "console"
    reader_home.mkdir()
    assert logged(reader_home) == rows(0, 80)
