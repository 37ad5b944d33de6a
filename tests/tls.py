"""A throwaway certificate authority for TLS tests: files a server and its clients load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TestCertificate:
    __test__ = False  # a helper, not a test class (pytest collects "Test*" it is imported as)

    ca: Path  # the CA certificate clients trust
    cert: Path  # the server's certificate chain, for 127.0.0.1 and localhost
    key: Path  # its private key

    def server_options(self) -> dict[str, str]:
        """The caboose Config options that serve with this certificate."""
        return {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}


def issue_certificate(folder: Path) -> TestCertificate:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = TestCertificate(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    issued.cert_chain_pems[0].write_to_path(str(files.cert))
    issued.private_key_pem.write_to_path(str(files.key))
    return files
