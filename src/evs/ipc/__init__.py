"""The IPC protocol between the executive and the library: frames and their codec, pure.

``messages`` holds the frames as values, ``codec`` turns them into length-prefixed bytes and
back. No sockets and no asyncio here: the daemon's server and both clients share this code.
"""

from evs.ipc.codec import FrameDecoder, FrameError, decode, encode
from evs.ipc.messages import IPC_VERSION, ErrorCode

__all__ = ["IPC_VERSION", "ErrorCode", "FrameDecoder", "FrameError", "decode", "encode"]
