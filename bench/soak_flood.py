#!/usr/bin/env python3
"""Signalling flood for bench/soak.sh: CONNS WebSocket connections to a loopback Veche, each
joining a guest room and then sending bursts of messages over the server's rate limit (chat,
media toggles, hand raises, unparseable and unknown frames), reconnecting whenever the server
closes it. Standard library only (RFC 6455 client framing by hand). Stops by itself after
--duration seconds; refuses any host but loopback. Prints one JSON summary line."""

import argparse
import base64
import ipaddress
import json
import os
import random
import select
import socket
import struct
import sys
import time


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Conn:
    def __init__(self, host, port, room, rng):
        self.sock = socket.create_connection((host, port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            buf += chunk
        status = buf.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(status.decode(errors="replace"))
        self.sock.setblocking(False)
        self.received = 0
        self.rng = rng
        self.send({"type": "join", "version": 1, "room": room, "name": "flood"})

    def send(self, msg):
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        self.sock.setblocking(True)
        self.sock.settimeout(5)
        try:
            self.sock.sendall(frame(data))
        finally:
            self.sock.setblocking(False)

    def drain(self):
        """Reads and discards whatever the server sent; False once it closed."""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self.received += len(chunk)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def burst_messages(rng, n):
    kinds = [
        lambda: {"type": "chat", "text": "flood " + "x" * rng.randrange(0, 200)},
        lambda: {"type": "set_media", "kind": rng.choice(["audio", "video", "screen"]),
                 "enabled": rng.random() < 0.5},
        lambda: {"type": "raise_hand", "raised": rng.random() < 0.5},
        lambda: b"{not json",
        lambda: {"type": "no_such_type"},
        lambda: {"type": "mute", "participant_id": rng.randrange(1, 1000), "kind": "audio"},
    ]
    return [rng.choice(kinds)() for _ in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--burst", type=int, default=150, help="messages per burst per connection")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between bursts")
    ap.add_argument("--room-prefix", default="flood-")
    args = ap.parse_args()
    if not ipaddress.ip_address(socket.gethostbyname(args.host)).is_loopback:
        sys.exit("soak_flood: loopback addresses only")
    rng = random.Random(8)
    end = time.monotonic() + args.duration
    conns = [None] * args.conns
    stats = {"connects": 0, "connect_failures": 0, "closed_by_server": 0, "sent": 0,
             "bytes_received": 0, "bursts": 0}
    next_burst = time.monotonic()
    while time.monotonic() < end:
        for i in range(args.conns):
            if conns[i] is None:
                try:
                    conns[i] = Conn(args.host, args.port, f"{args.room_prefix}{i % 2}", rng)
                    stats["connects"] += 1
                except OSError:
                    stats["connect_failures"] += 1
        if time.monotonic() >= next_burst:
            next_burst = time.monotonic() + args.every
            stats["bursts"] += 1
            for i, c in enumerate(conns):
                if c is None:
                    continue
                try:
                    for m in burst_messages(rng, args.burst):
                        c.send(m)
                        stats["sent"] += 1
                except OSError:
                    stats["closed_by_server"] += 1
                    stats["bytes_received"] += c.received
                    c.close()
                    conns[i] = None
        socks = [c.sock for c in conns if c is not None]
        if socks:
            select.select(socks, [], [], 0.2)
        else:
            time.sleep(0.2)
        for i, c in enumerate(conns):
            if c is not None and not c.drain():
                stats["closed_by_server"] += 1
                stats["bytes_received"] += c.received
                c.close()
                conns[i] = None
    for c in conns:
        if c is not None:
            stats["bytes_received"] += c.received
            c.close()
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
