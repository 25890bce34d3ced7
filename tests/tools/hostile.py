#!/usr/bin/env python3
"""hostile: abuse a downstairs that serves a live volume, without ever
taking the volume over (no ACTIVATE is ever sent after a HELLO, so the
upstairs stays the active connection).

  hostile.py attack -p PORT [-n 3000] [--idle 200] [--loris 4] [--seed S]
                    [--hold SECS]
      Opens --idle connections that never send a byte and --loris
      slow-loris senders (a valid HELLO, one byte per second), then sends
      -n frames on short-lived connections: random bytes, truncated
      frames, oversized and undersized length fields, unknown types and
      flags, valid headers with garbage bodies, and frames illegal in the
      connection's state (IO and ACTIVATE-less sequences before or after
      HELLO, a second HELLO...).  Each such connection must be closed by
      the downstairs.  The idle and slow-loris connections are held at
      least --hold seconds (default 20) in all.
      Afterwards the downstairs must still answer a HELLO.  Prints counts;
      exit 0 on success, 1 with a message otherwise.
  hostile.py starve -p PORT [--idle 100]
      Opens --idle idle connections, then tries a fresh HELLO, like a new
      upstairs would: prints whether it was refused (the downstairs'
      --max-conns cap counts unauthenticated idle connections), and keeps
      them --hold seconds (the caller checks its own upstairs meanwhile).

  hostile.py loris -p PORT [--hold SECS]
      One slow-loris sender must be closed (idle timeout) within --hold.

No frame makes a downstairs connect anywhere (EXTENT_REPAIR, which named
a source downstairs, was retired with protocol version 3).
"""
import argparse
import errno
import os
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsproto as p  # noqa: E402


def sanitize(data):
    """Walk the frames of a stream like the downstairs does and turn
    every ACTIVATE into an unknown type (99), so the stream cannot take
    the volume over."""
    b = bytearray(data)
    off = 0
    while len(b) - off >= 8:
        n = struct.unpack_from("<I", b, off)[0]
        if n < 8 or n > p.MAX_FRAME:
            break
        t = struct.unpack_from("<H", b, off + 4)[0]
        if t == p.T_ACTIVATE:
            struct.pack_into("<H", b, off + 4, 99)
        off += n
    return bytes(b)


def dial(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def still_open(s):
    """True if s was not closed (nor reset) by the peer."""
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def open_idle(port, n):
    conns, failed = [], 0
    for _ in range(n):
        try:
            conns.append(dial(port))
        except OSError:
            failed += 1
    time.sleep(1)   # refused ones are closed at once by the downstairs
    return conns, sum(still_open(s) for s in conns), failed


class Loris(threading.Thread):
    """A valid HELLO, one byte per second, until stopped or closed."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port, self.stop, self.sent, self.closed = port, stop, 0, False

    def run(self):
        try:
            s = dial(self.port)
            data = p.enc_hello(session=random.getrandbits(64), encrypted=1)
            while not self.stop.is_set():
                s.sendall(data[self.sent % len(data):][:1])
                self.sent += 1
                self.stop.wait(1.0)
            s.close()
        except OSError:
            self.closed = True


def attack_one(port, rnd, it, ok):
    """One connection: a state, then bad frames.  Returns frames sent."""
    bs, nblocks = ok["block_size"], ok["extent_size"] * ok["extent_count"]
    gen = ok["highest_gen"] + 1
    c = p.Conn("127.0.0.1", port, timeout=10)
    sent = 0
    try:
        negotiated = rnd.random() < 0.5
        if negotiated:
            c.hello(uuid=ok["uuid"], encrypted=ok["encrypted"])
            sent += 1
        frames = p.sample_frames(rnd, bs, ok["extent_size"], nblocks, gen)
        # Never a valid ACTIVATE: it would take the volume over (fencing
        # the real upstairs is possible without auth; not what we test).
        frames = [f for f in frames if f[4:6] != b"\x06\x00"]
        k = rnd.randrange(5)
        if k == 0:     # frames illegal in this state, valid in themselves
            data = rnd.choice([
                p.enc_read(1, 0, 1), p.enc_write(2, 0, [bytes(bs)]),
                p.enc_flush(3, 1, gen), p.enc_trim(4, 0, 1),
                p.enc_hello(uuid=ok["uuid"], encrypted=ok["encrypted"])
                if negotiated
                else p.enc_ping(1),
                p.frame(p.T_HELLO_OK, bytes(128)), p.enc_ping(1, p.T_PONG),
                p.frame(p.T_JOB_DONE, struct.pack("<QiI", 1, 0, 0))])
        elif k == 1:   # a valid header with a garbage body
            f = rnd.choice(frames)
            data = f[:8] + rnd.randbytes(len(f) - 8)
        elif k == 2:   # oversized or undersized length, maybe with a body
            n = rnd.choice([0, 7, 9, p.MAX_FRAME, p.MAX_FRAME + 1,
                            0xffffffff, 5 * 1024 * 1024, 2048])
            data = struct.pack("<IHH", n, rnd.choice([1, 10, 11, 16]), 0) + \
                rnd.randbytes(rnd.randint(0, 300))
        elif k == 3:   # truncated: the rest never comes
            f = rnd.choice(frames)
            data = f[:rnd.randrange(1, len(f))]
        else:          # mutated (dsproto.mutate) or pure garbage
            data = p.mutate(rnd.choice(frames), rnd)
        data = sanitize(data)
        try:
            c.send(data)
            sent += 1
            if k == 0:  # a well-formed frame in the wrong state: refused
                m = c.recv()
                p.check(m["type"] == p.T_ERROR and
                        m["err"] == errno.EPROTO,
                        "iteration %d: %s frame in state %s answered %s"
                        % (it, p.TYPE_NAMES.get(data[4], "?"),
                           "NEGOTIATED" if negotiated else "NEW", m))
            c.sock.shutdown(socket.SHUT_WR)   # truncated ones end here
        except OSError:
            sent += 1   # closed while we sent: it was rejected
        try:
            if not c.closed_by_peer(10):
                raise p.Fail("iteration %d: connection not closed" % it)
        except OSError:
            pass
    finally:
        c.close()
    return sent


def probe(port):
    """HELLO_OK of the downstairs (whichever encryption flag it wants)."""
    for enc in (1, 0):
        c = p.Conn("127.0.0.1", port)
        try:
            return c.hello(encrypted=enc)
        except p.DsError:
            pass
        finally:
            c.close()
    raise p.Fail("HELLO refused with and without encryption")


def attack(a):
    rnd = random.Random(a.seed)
    ok = probe(a.port)
    stop = threading.Event()
    idle, open_n, failed = open_idle(a.port, a.idle)
    print("hostile: %d idle connections attempted, %d held open, %d failed"
          % (a.idle, open_n, failed))
    loris = [Loris(a.port, stop) for _ in range(a.loris)]
    for t in loris:
        t.start()
    sent = conns = 0
    t0 = time.time()
    while sent < a.n:
        sent += attack_one(a.port, rnd, conns, ok)
        conns += 1
    print("hostile: %d frames on %d connections in %.1f s (seed %d)"
          % (sent, conns, time.time() - t0, a.seed))
    # Keep the idle and slow-loris connections for --hold seconds in all.
    stop.wait(max(0.0, a.hold - (time.time() - t0)))
    still = sum(still_open(s) for s in idle)
    stop.set()
    for t in loris:
        t.join(5)
    print("hostile: idle still open %d; slow-loris bytes sent %s"
          % (still, [t.sent for t in loris]))
    for s in idle:
        s.close()
    time.sleep(0.5)
    ok2 = probe(a.port)
    p.check(ok2["uuid"] == ok["uuid"], "HELLO_OK changed")
    print("hostile: downstairs alive, answers HELLO")


def starve(a):
    idle, open_n, failed = open_idle(a.port, a.idle)
    print("starve: %d idle connections held open (of %d)" % (open_n, a.idle))
    t0 = time.time()
    try:
        probe(a.port)
        print("starve: a new upstairs still gets HELLO_OK")
    except (OSError, EOFError, p.Fail, p.ProtoError) as e:
        print("starve: FINDING: a new upstairs is refused while %d idle "
              "connections are held: %s" % (open_n, e))
    sys.stdout.flush()
    time.sleep(max(0.0, a.hold - (time.time() - t0)))
    for s in idle:
        s.close()


def loris(a):
    """One slow sender (a HELLO, a byte a second) must be closed by the
    downstairs' idle timeout within --hold seconds: partial frames do
    not count as activity."""
    s = dial(a.port)
    data = p.enc_hello(session=random.getrandbits(64), encrypted=1)
    t0 = time.time()
    i = 0
    s.settimeout(1.0)
    while time.time() - t0 < a.hold:
        try:
            s.sendall(data[i % len(data):][:1])
            i += 1
            if s.recv(65536) == b"":
                break
        except socket.timeout:
            continue
        except OSError:
            break
    else:
        raise p.Fail("slow sender still connected after %.0f s" % a.hold)
    s.close()
    print("loris: slow sender closed after %.1f s (%d bytes sent)"
          % (time.time() - t0, i))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["attack", "starve", "loris"])
    ap.add_argument("-p", "--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--idle", type=int, default=200)
    ap.add_argument("--loris", type=int, default=4)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--hold", type=float, default=20.0,
                    help="keep idle connections this long (s)")
    a = ap.parse_args()
    if a.seed is None:
        a.seed = random.randrange(1 << 30)
    try:
        {"attack": attack, "starve": starve, "loris": loris}[a.mode](a)
    except (p.Fail, p.DsError, p.ProtoError, EOFError, OSError) as e:
        print("hostile: FAIL: %s (seed %d)" % (e, a.seed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
