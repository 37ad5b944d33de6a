"""``caboose-get``: one request from the command line, trailers shown.

    caboose-get https://127.0.0.1:8443/ --http2 -v --cacert ca.pem

The body goes to standard output. With ``-v`` the status line, the header fields and, after
the body, the trailer fields and how the exchange ended go to standard error, prefixed with
``<`` as curl does; the request's head with ``>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from caboose.client.client import Client, InvalidURL, Timeout
from caboose.client.errors import ClientError
from caboose.client.response import Fields


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caboose-get",
        description="Send one HTTP request and print the response, trailers included.",
        allow_abbrev=False,
    )
    parser.add_argument("url", help="an http:// or https:// URL")
    parser.add_argument(
        "-X", "--request", dest="method", help="the method (default GET, or POST with -d)"
    )
    parser.add_argument("-d", "--data", help="the request body; @FILE reads it from FILE")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header field (repeatable)",
    )
    parser.add_argument(
        "-T",
        "--trailer",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request trailer field (repeatable): the body is sent chunked or in DATA frames",
    )
    parser.add_argument("--http2", action="store_true", help="offer HTTP/2 by ALPN over TLS")
    parser.add_argument(
        "--prior-knowledge",
        action="store_true",
        help="speak HTTP/2 at once to an http:// URL (h2c)",
    )
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify the certificate"
    )
    parser.add_argument("--cacert", help="trust this CA bundle (PEM) instead of the system's")
    parser.add_argument("--max-size", type=int, help="the largest response body accepted, in bytes")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for each wait (30)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show heads, trailers and the close reason"
    )
    return parser


def _field(text: str, option: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise ValueError(f"{option} {text!r}: expected 'Name: value'")
    return name.strip(), value.strip()


def _show(prefix: str, fields: Fields | list[tuple[str, str]]) -> None:
    for name, value in fields:
        print(f"{prefix} {name}: {value}", file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    headers = [_field(text, "-H") for text in args.header]
    trailers = [_field(text, "-T") for text in args.trailer]
    body: bytes | None = None
    if args.data is not None:
        body = Path(args.data[1:]).read_bytes() if args.data.startswith("@") else args.data.encode()
    method = args.method or ("POST" if body is not None else "GET")
    verify: bool | str = False if args.insecure else (args.cacert or True)
    client = Client(
        http2=args.http2,
        http2_prior_knowledge=args.prior_knowledge,
        verify=verify,
        timeout=Timeout.of(args.timeout),
        max_response_size=args.max_size,
    )
    async with (
        client,
        client.stream(
            method, args.url, headers=headers, content=body, trailers=trailers or None
        ) as response,
    ):
        if args.verbose:
            print(f"> {method} {args.url}", file=sys.stderr)
            _show(">", headers)
            for status, fields in response.informational:
                print(f"< {response.http_version} {status}", file=sys.stderr)
                _show("<", fields)
            print(f"< {response.http_version} {response.status}", file=sys.stderr)
            _show("<", response.headers)
        out = sys.stdout.buffer
        async for chunk in response:
            out.write(chunk)
            out.flush()
        if args.verbose:
            if response.trailers:
                print("< (trailers)", file=sys.stderr)
                _show("<", response.trailers)
            reason = response.close_reason.value if response.close_reason else "?"
            print(f"* stream {response.stream_id} closed: {reason}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except ClientError as exc:
        print(f"caboose-get: {exc} ({exc.reason.value})", file=sys.stderr)
        return 1
    except (InvalidURL, ValueError, OSError) as exc:
        print(f"caboose-get: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
