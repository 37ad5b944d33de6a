"""An Echo gRPC service served by caboose, two ways: connectrpc and a hand-written ASGI app."""
