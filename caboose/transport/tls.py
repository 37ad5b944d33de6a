"""TLS server context with secure defaults (TLS 1.2+, ALPN)."""

from __future__ import annotations

import os
import ssl

from caboose.config import Config
from caboose.errors import ConfigError


def server_context(config: Config) -> ssl.SSLContext | None:
    if config.ssl_certfile is None:
        return None
    for option in ("ssl_certfile", "ssl_keyfile", "ssl_ca_certs"):
        path = getattr(config, option)
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"--{option.replace('_', '-')}: cannot read {path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION  # CRIME (RFC 7457 §2.6)
    try:
        context.load_cert_chain(
            config.ssl_certfile, config.ssl_keyfile, password=config.ssl_keyfile_password
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"--ssl-certfile/--ssl-keyfile: unusable certificate or key ({exc})"
        ) from None
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(config.ssl_ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"--ssl-ca-certs: cannot load {config.ssl_ca_certs} ({exc})"
            ) from None
        context.verify_mode = ssl.CERT_OPTIONAL
    if config.ssl_cert_reqs is not None:
        context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    # RFC 9113 §3.2: offer h2 first; §9.2: TLS 1.2+ with ephemeral, AEAD cipher suites.
    context.set_alpn_protocols(["h2", "http/1.1"] if config.http2 else ["http/1.1"])
    try:
        context.set_ciphers(config.ssl_ciphers)
    except ssl.SSLError:
        raise ConfigError(f"--ssl-ciphers: no cipher matches {config.ssl_ciphers!r}") from None
    return context
