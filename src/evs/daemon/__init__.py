"""The executive (corosync's exec/ role): asyncio sockets, timers, IPC server, config, state.

Only this package (and the asyncio client) touches the event loop; everything it drives is
the sans-I/O runtime and core below it.
"""
