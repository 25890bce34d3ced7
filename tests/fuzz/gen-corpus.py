#!/usr/bin/env python3
"""Write the seed corpora of the fuzz harnesses (tests/fuzz/corpus/NAME/).

Usage: gen-corpus.py [OUTDIR]   (default: corpus/ beside this script)

Valid frames come from tests/tools/dsproto.py (the Python codec that
matches common/proto.c), so the fuzzers start from frames that decode
and from streams that get past HELLO and ACTIVATE.  Deterministic: the
same files every run.
"""
import hashlib
import os
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tools"))
import dsproto as p  # noqa: E402

BS_CODE = {0: 0, 512: 1, 1024: 2, 4096: 3}   # fuzz_proto's byte 0
UUID = bytes([0x11] * 16)                     # fuzz_ds_request's region


def write(outdir, name, items):
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.unlink(os.path.join(d, old))
    for data in items:
        h = hashlib.sha1(data).hexdigest()
        with open(os.path.join(d, h), "wb") as f:
            f.write(data)


def block(bs, i):
    return bytes((i * 7 + k) & 0xff for k in range(bs))


def proto_frames():
    b512 = block(512, 1)
    out = [
        (0, p.enc_hello(uuid=UUID, session=7, gen=3)),
        (0, p.frame(p.T_HELLO_OK, struct.pack(
            "<IIQIBBH16sQ12s16s32s16sI", 2, 4096, 1024, 16, 1, 1, 0, UUID,
            5, bytes(range(12)), bytes(range(16)), bytes(32), bytes(16),
            0))),
        (0, p.frame(p.T_ERROR, struct.pack("<iIQ", 5, 0, 9) + b"bad thing")),
        (0, p.enc_extent_states_req()),
        (0, p.frame(p.T_EXTENT_STATES, struct.pack("<II", 2, 0) +
                    struct.pack("<QQB7x", 3, 4, 1) +
                    struct.pack("<QQB7x", 3, 5, 0))),
        (0, p.enc_activate(4, 1, bytes(range(12)), bytes(range(16)))),
        (0, p.frame(p.T_ACTIVATE_OK, struct.pack("<Q", 4))),
        (0, p.frame(p.T_NO_LONGER_ACTIVE, struct.pack("<Q", 5))),
        (512, p.enc_write(1, 10, [b512])),
        (512, p.enc_write(2, 0, [b512, block(512, 2)])),
        (4096, p.enc_read(3, 100, 8)),
        (4096, p.enc_trim(4, 7, 2)),
        (0, p.enc_flush(5, 2, 4)),
        (0, p.frame(p.T_JOB_DONE, struct.pack("<QiI", 6, 0, 0))),
        (0, p.frame(p.T_JOB_DONE, struct.pack("<QiI", 6, 5, 0))),
        (512, p.frame(p.T_READ_DONE, struct.pack("<QiI", 7, 0, 1) +
                      p.enc_ctx(9, 1234) + b512)),
        (512, p.frame(p.T_READ_DONE, struct.pack("<QiI", 7, 0, 1) +
                      p.enc_ctx(0, 0, flags=0) + bytes(512))),
        (0, p.frame(p.T_READ_DONE, struct.pack("<QiI", 8, 5, 0))),
        (0, p.enc_ping(11)),
        (0, p.enc_ping(12, p.T_PONG)),
        (0, p.enc_extent_flush(13, 1, 3, 4)),
        (0, p.enc_extent_mark(14, 1)),
        (0, p.enc_extent_map_req(15, 64, 64)),
        (0, p.frame(p.T_EXTENT_MAP, struct.pack("<QiI", 15, 0, 11) +
                    bytes([0xa5, 0x05]))),
        (0, p.frame(p.T_EXTENT_MAP, struct.pack("<QiI", 16, 5, 0))),
        (0, p.enc_snapshot(17, p.SNAP_CREATE, b"s1", 3, 4, 1764700000)),
        (0, p.enc_snapshot(18, p.SNAP_DELETE, b"s1")),
        (0, p.enc_snapshot(19, p.SNAP_LIST)),
        (0, p.frame(p.T_SNAPSHOTS, struct.pack("<QiI", 19, 0, 1) +
                    struct.pack("<64sIIQQQQII", b"s1", 1, 8, 5, 4, 3,
                                1 << 20, 2, 0))),
        (0, p.frame(p.T_SNAPSHOTS, struct.pack("<QiI", 19, 5, 0))),
    ]
    return [bytes([BS_CODE[bs]]) + f for bs, f in out]


def base64_inputs():
    import base64
    raw = [b"", b"f", b"fo", b"foo", bytes(range(32)), bytes(28)]
    out = [base64.b64encode(r) for r in raw]
    out += [base64.b64encode(bytes(32)) + b"\n", b"  QUJD\n",
            b"QQ==", b"QUI=", b"QUJD", b"Q===", b"====", b"QU=D",
            b"QUJD\x00QUJD", b"QU JD", b"-_-_"]
    return out


def region_json_inputs():
    doc = ('{"version":1,"block_size":%d,"extent_size":{"value":%d,'
           '"shift":%d},"extent_count":%d,'
           '"uuid":"11111111-1111-1111-1111-111111111111",'
           '"encrypted":%s,"highest_gen":%d,"kcv":%s}\n')
    kcv = '"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw=="'
    return [
        (doc % (4096, 32768, 12, 8, "true", 0, "null")).encode(),
        (doc % (512, 1024, 9, 16, "false", 3, kcv)).encode(),
        (doc % (4096, 1, 12, 1, "true", 18446744073709551615, kcv)).encode(),
        ('{ "kcv" : null , "highest_gen" : 7, "encrypted": true,\n'
         ' "uuid": "11111111-1111-1111-1111-111111111111",'
         ' "extent_count": 2, "extent_size": {"shift": 12, "value": 8},'
         ' "block_size": 4096, "version": 1 }').encode(),
        b'{"version":1}', b'{}', b'{"version":01}',
    ]


def ds_request_inputs():
    """Mode byte (bit 0: the harness activates first) + a byte stream."""
    bs, nblocks = 512, 256     # fuzz_ds_request's region
    w = [block(bs, i) for i in range(4)]
    io = [
        p.enc_write(1, 0, [w[0]]),
        p.enc_write(2, 60, w[:4]),            # crosses extents 0/1: EINVAL
        p.enc_write(3, 64, w[:2]),
        p.enc_write(4, 5, [w[1]], hashes=[1]),   # bad hash: EBADMSG
        p.enc_read(5, 0, 2),
        p.enc_read(6, nblocks - 1, 1),
        p.enc_read(7, nblocks, 1),            # past the end
        p.enc_trim(8, 1, 1),
        p.enc_flush(9, 1, 1),
        p.enc_ping(10),
        p.enc_extent_states_req(),
        p.enc_extent_map_req(20, 0, 64),
        p.enc_extent_map_req(21, 60, 8),      # crosses extents 0/1: EINVAL
        p.enc_extent_map_req(22, nblocks, 1),  # past the end
    ]
    out = [b"\x01" + f for f in io]
    out.append(b"\x01" + b"".join(io))
    out.append(b"\x03" + b"".join(io[:4]))    # in 1-byte pieces
    out.append(b"\x01" + p.enc_write(11, 3, [w[2]]) + p.enc_flush(12, 2, 1) +
               p.enc_read(13, 3, 1) + p.enc_trim(14, 3, 1))
    # EXTENT_MARK, a write and FLUSH on the marked extent, EXTENT_FLUSH
    # (the harness activates with highest + 1: gen 2 matches only on a
    # fresh region, otherwise EINVAL), an eid past the end.
    out.append(b"\x01" + p.enc_extent_mark(15, 1) + p.enc_write(16, 65, [w[3]]) +
               p.enc_flush(17, 3, 2) + p.enc_extent_flush(18, 1, 4, 2) +
               p.enc_extent_mark(19, 99))
    # SNAPSHOT: a write, create (gen 2 as above), a write after it (the
    # copy), list, a taken name, delete, an unknown one.
    out.append(b"\x01" + p.enc_write(23, 2, [w[0]]) +
               p.enc_snapshot(24, p.SNAP_CREATE, b"s1", 5, 2) +
               p.enc_write(25, 2, [w[1]]) + p.enc_snapshot(26, p.SNAP_LIST) +
               p.enc_snapshot(27, p.SNAP_CREATE, b"s1", 6, 2) +
               p.enc_snapshot(28, p.SNAP_DELETE, b"s1") +
               p.enc_snapshot(29, p.SNAP_DELETE, b"nope"))
    hello = p.enc_hello(uuid=UUID, session=99, gen=1)
    out += [
        b"\x00" + hello,
        b"\x00" + hello + p.enc_extent_states_req() + p.enc_ping(1),
        b"\x00" + p.enc_hello() + p.enc_activate(1 << 40) + io[0] + io[4],
        b"\x00" + hello + hello,
        b"\x00" + p.enc_ping(1),
        b"\x00" + struct.pack("<IHH", 0xffffffff, 1, 0),
        b"\x01" + struct.pack("<IHH", 64 << 20, p.T_WRITE, 0),
    ]
    return out


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here,
                                                                "corpus")
    write(outdir, "fuzz_proto", proto_frames())
    write(outdir, "fuzz_base64", base64_inputs())
    write(outdir, "fuzz_region_json", region_json_inputs())
    write(outdir, "fuzz_ds_request", ds_request_inputs())


if __name__ == "__main__":
    main()
