"""asyncio transports: move bytes between sockets and the sans-I/O core."""
