"""The sidecar's server process never imports torch or nerfstudio: its start, its loop and
session.create's checks of the preset and backend read edit3d's catalogue (names only);
torch lives in the worker process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sidecar_harness import REPO

SERVER = r"""
import sys
import threading
from pathlib import Path

from protocol import messages as m
from protocol.client import Client
from protocol.errors import RemoteError
from sidecar.server import ServerConfig, Sidecar

sidecar = Sidecar(ServerConfig(workdir=Path(sys.argv[1]), profile="tiny", preload=False))
sidecar.recover_sessions()
loop = threading.Thread(target=sidecar.serve_forever)
loop.start()
client = Client(sidecar.connection_file, client_name="probe")
try:
    client.connect(timeout_s=20.0)
    created = client.request(m.SessionCreate(name="ok", preset="tiny", backend="splatfacto"))
    print("created:", created.backend, created.preset)
    for bad in (m.SessionCreate(name="bad", backend="no-such-backend"),
                m.SessionCreate(name="bad", preset="no-such-preset", backend="splatfacto")):
        try:
            client.request(bad)
        except RemoteError as error:
            print("refused:", error.code, error.message)
finally:
    client.close()
    sidecar.stop()
    loop.join()
    sidecar.close()
print("loaded:", sorted(name for name in ("torch", "nerfstudio") if name in sys.modules))
"""


def test_the_server_starts_and_checks_requests_without_torch(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVER, str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "created: splatfacto tiny" in lines
    refusals = [line for line in lines if line.startswith("refused:")]
    assert len(refusals) == 2, done.stdout
    assert "backend must be one of ['nerfacto', 'splatfacto'], got 'no-such-backend'" in (
        refusals[0]
    )
    assert "preset must be one of ['paper', 'small', 'tiny'], got 'no-such-preset'" in (
        refusals[1]
    )
    assert lines[-1] == "loaded: []"
    sessions = list((tmp_path / "work" / "sessions").iterdir())
    assert len(sessions) == 1  # the refused requests made nothing
