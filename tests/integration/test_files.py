"""The live server's files: the data directory 0700, the database and its -wal and -shm
files 0600, whatever the umask (HIPAA-minded handling of data at rest)."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

from tests.integration.conftest import Server
from tests.integration.wsclient import Raw


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_dir_and_database_files_are_owner_only(server: Server) -> None:
    sid = f"s-{uuid.uuid4().hex[:6]}"
    raw, _ = await Raw.open(server.ws(f"/ws/chat/{sid}"), server.token("alice", sessions=[sid]))
    await raw.send({"type": "message", "id": "m1", "body": {"text": "hi"}})
    await raw.until(lambda f: f["type"] == "ack")  # written: the -wal and -shm files exist
    await raw.close()
    data = server.settings.data_dir
    assert mode(data) == 0o700
    files = [data / n for n in ("confide.db", "confide.db-wal", "confide.db-shm")]
    assert all(f.exists() for f in files)
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
