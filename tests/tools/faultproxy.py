#!/usr/bin/env python3
"""faultproxy: a TCP fault-injection proxy for the crucible-c failure tests.

Proxy mode sits between a client (the upstairs) and one server (a
downstairs) and forwards bytes both ways, with faults switched at run time
through a unix control socket:

  faultproxy.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT \\
                --control /path/ctl.sock

Client mode sends one command and prints the answer (exit 0 if "ok"):

  faultproxy.py --ctl /path/ctl.sock CMD [ARGS...]

Commands, one per line; each answers one line, "ok ..." or "error: ...":
  delay MS         add MS milliseconds of one-way latency per direction
                   (a request/reply round trip gains 2*MS); 0 = off
  throttle BPS     limit each direction of each connection to BPS bytes
                   per second; 0 = off
  stall            blackhole: keep connections open, forward nothing and
                   stop reading both ways (the senders' TCP windows fill)
  resume           end a stall
  cut              close every current connection (both sides)
  refuse on|off    close new connections at once, without a target
  corrupt up|down TYPE
                   one-shot: set an unknown flag (0x8000) in the header
                   of the next frame of protocol type TYPE (a number) sent
                   upstream (client to server) or downstream (server to
                   client), on whichever connection sends one first; the
                   receiver must refuse it as malformed
  reset            delay 0, throttle 0, resume, refuse off, no corrupt
  status           "ok listen=H:P conns=N accepted=N refused=N cut=N
                   up=BYTES down=BYTES delay=MS throttle=BPS stalled=0|1
                   refuse=0|1 corrupted=N"

Guarantees: the control socket exists only once the listener is up, so a
test can wait for it; buffering per connection is bounded (QUEUE_CHUNKS
chunks per direction plus asyncio's own 64 KiB buffers), because readers
wait while stalled or while the queue is full; nothing polls, so a stall
costs no CPU; SIGTERM/SIGINT close everything, remove the control socket
and exit 0.  Data queued before a `delay` change keeps its old deadline.
"""

import argparse
import asyncio
import os
import signal
import socket
import sys
import time

CHUNK = 64 * 1024      # bytes per socket read
QUEUE_CHUNKS = 4       # chunks queued per direction between read and write
CONNECT_TIMEOUT = 10   # seconds to reach the target


def log(msg):
    print("faultproxy: " + msg, file=sys.stderr, flush=True)


def parse_hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got " + s)
    return host.strip("[]") or "127.0.0.1", int(port)


def nodelay(writer):
    # NBD requests are small and latency-bound: Nagle plus delayed ACKs
    # would add ~40 ms stalls that we did not ask for.
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Faults:
    """The fault settings shared by every connection."""

    def __init__(self):
        self.delay = 0.0               # seconds, one way
        self.rate = 0                  # bytes per second, 0 = unlimited
        self.refuse = False
        self.corrupt = {}              # direction -> frame type, one-shot
        self.corrupted = 0
        self.running = asyncio.Event()  # cleared while stalled
        self.running.set()


class Conn:
    """One proxied connection: two directions, each a reader task feeding
    a bounded queue and a writer applying delay, throttle and stall."""

    def __init__(self, proxy, cr, cw, sr, sw):
        self.proxy, self.faults = proxy, proxy.faults
        self.ends = (cw, sw)
        self.tasks = [asyncio.ensure_future(self.pipe(cr, sw, "up")),
                      asyncio.ensure_future(self.pipe(sr, cw, "down"))]

    async def run(self):
        """Forward until both directions end or one fails, then close."""
        try:
            await asyncio.gather(*self.tasks)
        except (Exception, asyncio.CancelledError):  # reset, cut, shutdown
            pass
        finally:
            self.abort()

    def abort(self):
        """Close both sockets at once, dropping anything queued."""
        for t in self.tasks:
            t.cancel()
        for w in self.ends:
            w.transport.abort()
        self.proxy.conns.discard(self)

    async def pipe(self, src, dst, name):
        queue = asyncio.Queue(QUEUE_CHUNKS)
        reader = asyncio.ensure_future(self.read_side(src, queue))
        try:
            await self.write_side(dst, queue, name)
        finally:
            reader.cancel()

    async def read_side(self, src, queue):
        while True:
            await self.faults.running.wait()   # stalled: stop reading
            data = await src.read(CHUNK)
            if not data:
                await queue.put(None)
                return
            await queue.put((time.monotonic() + self.faults.delay, data))

    def scan(self, name, data, st):
        """Follow the frame boundaries of one direction (u32 length, u16
        type, u16 flags; st = [header bytes so far, body bytes left]) and
        apply an armed `corrupt` to the flags of the first matching frame.
        The type is known before the flags byte goes out, so the byte is
        changed in the chunk being written even if the header straddles
        two chunks."""
        f, i = self.faults, 0
        while i < len(data):
            if st[1] > 0:
                n = min(st[1], len(data) - i)
                st[1] -= n
                i += n
                continue
            st[0].append(data[i])
            if len(st[0]) == 8:
                want = f.corrupt.get(name)
                ftype = int.from_bytes(st[0][4:6], "little")
                if want is not None and ftype == want:
                    data[i] |= 0x80      # flags high byte: 0x8000
                    del f.corrupt[name]
                    f.corrupted += 1
                    log("corrupted a %s frame of type %d" % (name, ftype))
                st[1] = max(0, int.from_bytes(st[0][0:4], "little") - 8)
                st[0] = bytearray()
            i += 1
        return bytes(data)

    async def write_side(self, dst, queue, name):
        next_free = 0.0                  # throttle: when the link is free
        st = [bytearray(), 0]            # frame scanner state (scan)
        while True:
            item = await queue.get()
            if item is None:             # EOF: pass the half-close on
                if dst.can_write_eof():
                    dst.write_eof()
                return
            deadline, data = item
            data = self.scan(name, bytearray(data), st)
            if deadline > time.monotonic():
                await asyncio.sleep(deadline - time.monotonic())
            while data:
                await self.faults.running.wait()
                rate = self.faults.rate
                # Slices of 1/20 s keep a throttled stream smooth.
                n = max(1, rate // 20) if rate else len(data)
                piece, data = data[:n], data[n:]
                if rate:
                    now = time.monotonic()
                    if next_free > now:
                        await asyncio.sleep(next_free - now)
                    next_free = max(now, next_free) + len(piece) / rate
                    await self.faults.running.wait()
                dst.write(piece)
                await dst.drain()
                self.proxy.bytes[name] += len(piece)


class Proxy:
    """The listener, the control socket and the set of connections."""

    def __init__(self, target):
        self.target = target
        self.faults = Faults()
        self.conns = set()
        self.bytes = {"up": 0, "down": 0}
        self.counts = {"accepted": 0, "refused": 0, "cut": 0}
        self.listen = None

    async def on_client(self, cr, cw):
        self.counts["accepted"] += 1
        if self.faults.refuse:
            self.counts["refused"] += 1
            cw.transport.abort()
            return
        try:
            sr, sw = await asyncio.wait_for(
                asyncio.open_connection(*self.target), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            log("connect %s:%d: %s" % (self.target + (e,)))
            cw.transport.abort()
            return
        nodelay(cw)
        nodelay(sw)
        conn = Conn(self, cr, cw, sr, sw)
        self.conns.add(conn)
        await conn.run()

    def command(self, line):
        """Apply one control command; return the answer line."""
        f = self.faults
        words = line.split()
        cmd, args = (words[0], words[1:]) if words else ("", [])
        try:
            if cmd == "delay" and len(args) == 1 and float(args[0]) >= 0:
                f.delay = float(args[0]) / 1000
            elif cmd == "throttle" and len(args) == 1 and int(args[0]) >= 0:
                f.rate = int(args[0])
            elif cmd == "stall" and not args:
                f.running.clear()
            elif cmd == "resume" and not args:
                f.running.set()
            elif cmd == "cut" and not args:
                self.counts["cut"] += len(self.conns)
                for c in list(self.conns):
                    c.abort()
            elif cmd == "refuse" and args in (["on"], ["off"]):
                f.refuse = args[0] == "on"
            elif (cmd == "corrupt" and len(args) == 2 and
                  args[0] in ("up", "down")):
                f.corrupt[args[0]] = int(args[1], 0)
            elif cmd == "reset" and not args:
                f.delay, f.rate, f.refuse = 0.0, 0, False
                f.corrupt = {}
                f.running.set()
            elif cmd == "status" and not args:
                return self.status()
            else:
                return "error: bad command: " + line.strip()
        except ValueError:
            return "error: bad number: " + line.strip()
        return "ok"

    def status(self):
        f = self.faults
        return ("ok listen=%s:%d conns=%d accepted=%d refused=%d cut=%d "
                "up=%d down=%d delay=%g throttle=%d stalled=%d refuse=%d "
                "corrupted=%d" %
                (self.listen + (len(self.conns), self.counts["accepted"],
                 self.counts["refused"], self.counts["cut"], self.bytes["up"],
                 self.bytes["down"], f.delay * 1000, f.rate,
                 not f.running.is_set(), f.refuse, f.corrupted)))

    async def on_control(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                line = line.decode(errors="replace").strip()
                answer = self.command(line)
                log("%s -> %s" % (line, answer))
                writer.write((answer + "\n").encode())
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


async def serve(args):
    proxy = Proxy(args.target)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(proxy.on_client, *args.listen,
                                        reuse_address=True, backlog=256)
    proxy.listen = server.sockets[0].getsockname()[:2]
    if os.path.exists(args.control):
        os.unlink(args.control)
    control = await asyncio.start_unix_server(proxy.on_control, args.control)
    log("listening on %s:%d, target %s:%d, control %s" %
        (proxy.listen + args.target + (args.control,)))
    try:
        await stop.wait()
    finally:
        log("exiting")
        server.close()
        control.close()
        for c in list(proxy.conns):
            c.abort()
        try:
            os.unlink(args.control)
        except OSError:
            pass


def client(path, words):
    """Client mode: send one command, print the answer, 0 if ok."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall((" ".join(words) + "\n").encode())
        answer = s.makefile().readline().strip()
    print(answer)
    return 0 if answer == "ok" or answer.startswith("ok ") else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", type=parse_hostport, help="HOST:PORT")
    p.add_argument("--target", type=parse_hostport, help="HOST:PORT")
    p.add_argument("--control", help="control unix socket to create")
    p.add_argument("--ctl", help="client mode: control socket to talk to")
    p.add_argument("cmd", nargs="*", help="client mode: the command")
    args = p.parse_args()
    if args.ctl:
        if not args.cmd:
            p.error("--ctl needs a command")
        try:
            return client(args.ctl, args.cmd)
        except OSError as e:
            print("error: %s: %s" % (args.ctl, e))
            return 1
    if not (args.listen and args.target and args.control) or args.cmd:
        p.error("proxy mode needs --listen, --target and --control")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
