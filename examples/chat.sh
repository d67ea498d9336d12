#!/usr/bin/env bash
# chat.sh: a group chat made of two evs commands, no code.
#
#   evs listen GROUP        joins GROUP and prints every message and configuration change
#   evs send GROUP - --lines   multicasts each line of its input to GROUP (the sender need
#                              not join it)
#
# Every member of the group prints the same lines in the same order: the ring orders the
# messages of all senders, and a configuration change ("-- transitional ...", "-- regular
# ...") appears at the same place in every member's output. Your own lines come back to you
# through the listener, in their place in that order, like everybody else's.
#
# Usage: chat.sh NAME [GROUP]     then type lines; Ctrl-D (end of input) quits.
# The executive is the one at $EVS_SOCKET (else the default socket, /run/evs/evs.sock).
#
# Against local executives (the same loopback cluster `evs demo` runs, kept running):
#   python examples/local_cluster.py --nodes 3 --dir /tmp/evs-cluster     # terminal 1
#   EVS_SOCKET=/tmp/evs-cluster/node1/evs.sock examples/chat.sh alice     # terminal 2
#   EVS_SOCKET=/tmp/evs-cluster/node2/evs.sock examples/chat.sh bob       # terminal 3
# Then kill -9 one executive (local_cluster.py prints the pids) and watch the
# configuration change arrive in both chats at the same point of the conversation.
set -euo pipefail

name=${1:?usage: chat.sh NAME [GROUP]}
group=${2:-chat}

# The listener runs in the background for the whole session and prints to our terminal.
evs listen "$group" &
listener=$!
trap 'kill "$listener" 2>/dev/null || true' EXIT

# One handle for the whole session: `evs send --lines` multicasts each line it reads from
# standard input as a message of its own (the lines of one read are written together).
while IFS= read -r line; do
    printf '%s: %s\n' "$name" "$line"
done | evs send "$group" - --lines
