"""Sans-I/O protocol core: bytes in, events out; no sockets, no awaits, no clocks."""
