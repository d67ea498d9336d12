"""The library: a sans-I/O ``ClientSession`` wrapped by the blocking ``Client`` and ``AsyncClient``.

It speaks only the IPC protocol (``evs.ipc``) and never imports the protocol core or the
runtime, so an application that imports it stays small and starts fast.
"""
