"""The ASGI bridge: one state machine per ASGI scope type, shared by every protocol."""
