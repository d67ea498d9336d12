"""The executive: asyncio I/O around the runtime (UDP transport, timers, the IPC server)."""
