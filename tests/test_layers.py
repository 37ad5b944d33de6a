"""The layer contract of docs/architecture.md: each layer imports only the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "caboose"

# layer -> modules it must never import (prefix match on the dotted name)
FORBIDDEN = {
    "core": (
        "asyncio",
        "socket",
        "ssl",
        "selectors",
        "logging",
        "time",
        "caboose.asgi",
        "caboose.transport",
        "caboose.server",
        "caboose.cli",
        "caboose.client",
    ),
    "asgi": (
        "socket",
        "ssl",
        "caboose.transport",
        "caboose.server",
        "caboose.cli",
        "caboose.core.h1",
        "caboose.core.h2",
    ),
    "transport": ("caboose.server", "caboose.cli", "caboose.supervisor", "caboose.client"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in imported_modules(path):
            for banned in FORBIDDEN[layer]:
                if name == banned or name.startswith(banned + "."):
                    found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return found


def test_core_is_sans_io() -> None:
    assert violations("core") == []


def test_asgi_bridge_knows_no_protocol_details() -> None:
    assert violations("asgi") == []


def test_transport_does_not_import_the_runtime() -> None:
    assert violations("transport") == []


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import asyncio\nfrom caboose.transport import flow\n")
    assert {"asyncio", "caboose.transport"} <= imported_modules(sample)


def test_each_driver_knows_only_its_own_protocol() -> None:
    """The negotiator (transport/negotiate.py) is the one module that knows both drivers."""
    transport = PACKAGE / "transport"
    assert "caboose.transport.http2" not in imported_modules(transport / "http1.py")
    assert "caboose.transport.http1" not in imported_modules(transport / "http2.py")
    for name in ("http1.py", "http2.py", "driver.py"):
        assert "caboose.transport.negotiate" not in imported_modules(transport / name)
    assert "caboose.core.h2" not in {
        m.rsplit(".", 1)[0] for m in imported_modules(transport / "http1.py")
    }
