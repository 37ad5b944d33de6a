"""The example's stubs come from its .proto at test time, through grpcio-tools and the plugins."""

from __future__ import annotations

import os
from pathlib import Path

from examples.grpc_echo import stubs

FLAVOURS = ["echo_connect.py", "echo_grpc.py", "echo_pb2.py", "echo_pb2_grpc.py"]


def test_protoc_writes_every_flavour(tmp_path: Path) -> None:
    stubs.generate(tmp_path)
    written = sorted(path.name for path in (tmp_path / "echo").glob("echo_*.py"))
    assert written == FLAVOURS and stubs.is_fresh(tmp_path)
    for name in FLAVOURS:
        source = (tmp_path / "echo" / name).read_text()
        compile(source, name, "exec")
        assert "SlowRequest" in source  # every flavour knows the whole service


def test_stubs_older_than_the_proto_are_stale(tmp_path: Path) -> None:
    stubs.generate(tmp_path)
    stamp = tmp_path / "echo" / "echo_connect.py"
    old = stubs.PROTO.stat().st_mtime - 10

    os.utime(stamp, (old, old))
    assert not stubs.is_fresh(tmp_path)
