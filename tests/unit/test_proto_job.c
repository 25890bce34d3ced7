/* Unit test: the wire codec's job frames and their replies
 * (common/proto_job.c).  Every frame type round-trips, every strict
 * prefix is rejected, random mutations stay inside the buffer
 * (test_proto.h). */
#include "test_proto.h"

/* Block status frames: every field survives, at the exact lengths. */
static void roundtrip_map(void)
{
  struct proto_msg m;
  struct frame *f = add();
  f->len = proto_put_extent_map_req(f->b, 51, 32768, PROTO_MAX_MAP_BLOCKS);
  CHECK(f->len == PROTO_EXTENT_MAP_REQ_LEN && f->len == 32);
  CHECK(proto_rd16(f->b + 4) == 41);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 &&
        m.type == PROTO_T_EXTENT_MAP_REQ && m.u.io.job_id == 51 &&
        m.u.io.lba == 32768 && m.u.io.n == PROTO_MAX_MAP_BLOCKS);
  CHECK(proto_max_job_blocks(PROTO_T_EXTENT_MAP_REQ, 4096) ==
        PROTO_MAX_MAP_BLOCKS);
  CHECK(strcmp(proto_type_name(PROTO_T_EXTENT_MAP_REQ), "EXTENT_MAP_REQ") == 0);
  CHECK(strcmp(proto_type_name(PROTO_T_EXTENT_MAP), "EXTENT_MAP") == 0);
  /* 11 blocks: 2 bitmap bytes, the 5 unused high bits zero. */
  f = add();
  f->len = proto_put_extent_map_hdr(f->b, 52, 0, 11);
  CHECK(f->len == PROTO_EXTENT_MAP_HDR_LEN && proto_rd32(f->b) == 24 + 2);
  CHECK(proto_rd16(f->b + 4) == 42);
  f->b[f->len] = 0xa5;
  f->b[f->len + 1] = 0x05;
  f->len += 2;
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 &&
        m.type == PROTO_T_EXTENT_MAP && m.u.map.job_id == 52 &&
        m.u.map.err == 0 && m.u.map.n == 11 &&
        m.u.map.bits == f->b + PROTO_EXTENT_MAP_HDR_LEN &&
        m.u.map.bits[0] == 0xa5 && m.u.map.bits[1] == 0x05);
  /* A multiple of 8 uses every bit of its last byte. */
  f = add();
  f->len = proto_put_extent_map_hdr(f->b, 53, 0, 16);
  f->b[f->len] = 0xff;
  f->b[f->len + 1] = 0xff;
  f->len += 2;
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.u.map.n == 16);
  f = add();
  f->len = proto_put_extent_map_hdr(f->b, 54, EIO, 0);
  CHECK(f->len == 24);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.u.map.err == EIO &&
        m.u.map.n == 0 && m.u.map.bits == NULL);
}

/* Malformed block status frames. */
static void test_rejects_map(void)
{
  struct proto_msg m;
  uint8_t b[MAXF] = {0};
  size_t len;

  /* REQ: n 0, n past the limit, lba + n wrapping, each pad byte, a flag,
   * every wrong length. */
  len = proto_put_extent_map_req(b, 1, 0, 0);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  len = proto_put_extent_map_req(b, 1, 0, PROTO_MAX_MAP_BLOCKS + 1);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  len = proto_put_extent_map_req(b, 1, UINT64_MAX - 1, 2);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  for (int i = 28; i < 32; i++) {
    len = proto_put_extent_map_req(b, 1, 0, 1);
    CHECK(proto_decode(b, len, 0, &m) == 0);
    b[i] = 1;
    CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  }
  len = proto_put_extent_map_req(b, 1, 0, 1);
  proto_le16(b + 6, PROTO_F_CTX_ONLY);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  for (size_t l = PROTO_FRAME_HDR_LEN; l <= 40; l++) {
    if (l == PROTO_EXTENT_MAP_REQ_LEN)
      continue;
    memset(b, 0, sizeof b);
    proto_put_extent_map_req(b, 1, 0, 1);
    proto_le32(b, (uint32_t) l);
    CHECK(proto_decode(b, l, 0, &m) == -EPROTO);
  }
  /* MAP: bitmap one byte short or long, a bit past n, error with a
   * bitmap or a count, a negative error, n 0 or past the limit, pad
   * byte of the error frame's count. */
  memset(b, 0, sizeof b);
  len = proto_put_extent_map_hdr(b, 1, 0, 9) + 2;
  CHECK(proto_decode(b, len, 0, &m) == 0);
  CHECK(proto_decode(b, len - 1, 0, &m) == -EPROTO);
  proto_le32(b, (uint32_t) (len + 1));
  CHECK(proto_decode(b, len + 1, 0, &m) == -EPROTO);
  proto_le32(b, (uint32_t) len);
  for (int bit = 1; bit < 8; bit++) {
    b[PROTO_EXTENT_MAP_HDR_LEN + 1] = (uint8_t) (1u << bit);
    CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  }
  b[PROTO_EXTENT_MAP_HDR_LEN + 1] = 1;
  CHECK(proto_decode(b, len, 0, &m) == 0);
  len = proto_put_extent_map_hdr(b, 1, EIO, 0) + 1;
  proto_le32(b, (uint32_t) len);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  len = proto_put_extent_map_hdr(b, 1, EIO, 0);
  proto_le32(b + 20, 1);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  len = proto_put_extent_map_hdr(b, 1, -5, 0);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  len = proto_put_extent_map_hdr(b, 1, 0, 0);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  /* n past the limit with a length that matches it: still refused. */
  size_t big =
      PROTO_EXTENT_MAP_HDR_LEN + proto_map_bytes(PROTO_MAX_MAP_BLOCKS + 8);
  uint8_t *h = calloc(1, big);
  CHECK(h != NULL);
  if (h) {
    proto_put_extent_map_hdr(h, 1, 0, PROTO_MAX_MAP_BLOCKS + 8);
    CHECK(proto_decode(h, big, 0, &m) == -EPROTO);
    proto_put_extent_map_hdr(h, 1, 0, PROTO_MAX_MAP_BLOCKS);
    CHECK(proto_decode(h, big - 1, 0, &m) == 0);
    free(h);
  }
}

/* Repair frames: every field survives encode + decode. */
static void roundtrip_repair(void)
{
  struct proto_msg m;
  struct frame *f = add();
  struct proto_extent_op o = {.job_id = 41, .eid = 7, .flush_no = 9, .gen = 3};
  f->len = proto_put_extent_op(f->b, PROTO_T_EXTENT_FLUSH, &o);
  CHECK(f->len == PROTO_EXTENT_FLUSH_LEN);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 &&
        m.type == PROTO_T_EXTENT_FLUSH && m.u.ext.job_id == 41 &&
        m.u.ext.eid == 7 && m.u.ext.flush_no == 9 && m.u.ext.gen == 3);
  /* EXTENT_MARK: EXTENT_CLOSE's old layout, job_id and eid; the
   * highest eid the protocol allows. */
  struct proto_extent_op k = {.job_id = 42, .eid = PROTO_MAX_EXTENTS - 1};
  f = add();
  f->len = proto_put_extent_op(f->b, PROTO_T_EXTENT_MARK, &k);
  CHECK(f->len == PROTO_EXTENT_OP_LEN && f->len == 24);
  CHECK(proto_rd32(f->b) == 24 && proto_rd16(f->b + 4) == 26 &&
        proto_rd64(f->b + 8) == 42 &&
        proto_rd32(f->b + 16) == PROTO_MAX_EXTENTS - 1 &&
        proto_rd32(f->b + 20) == 0);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 &&
        m.type == PROTO_T_EXTENT_MARK && m.u.ext.job_id == 42 &&
        m.u.ext.eid == PROTO_MAX_EXTENTS - 1 && m.u.ext.gen == 0);
  /* EXTEND: the same 24 bytes, eid = the new extent count (never 0). */
  {
    struct proto_extent_op x = {.job_id = 43, .eid = 9};
    uint8_t t[PROTO_EXTENT_OP_LEN];
    CHECK(proto_put_extent_op(t, PROTO_T_EXTEND, &x) == 24 &&
          proto_rd16(t + 4) == 45);
    CHECK(proto_decode(t, sizeof t, 0, &m) == 0 && m.type == PROTO_T_EXTEND &&
          m.u.ext.job_id == 43 && m.u.ext.eid == 9);
    x.eid = 0;
    proto_put_extent_op(t, PROTO_T_EXTEND, &x);
    CHECK(proto_decode(t, sizeof t, 0, &m) == -EPROTO);
  }
  CHECK(strcmp(proto_type_name(PROTO_T_EXTENT_MARK), "EXTENT_MARK") == 0);
  struct proto_file_req q = {.job_id = 45,
                             .eid = 2,
                             .file = PROTO_FILE_DB,
                             .offset = 1 << 20,
                             .len = 4096};
  f = add();
  f->len = proto_put_file_req(f->b, &q);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.type == PROTO_T_FILE_REQ &&
        m.u.file_req.job_id == 45 && m.u.file_req.eid == 2 &&
        m.u.file_req.file == PROTO_FILE_DB && m.u.file_req.offset == 1 << 20 &&
        m.u.file_req.len == 4096);
  struct proto_file_data d = {
      .job_id = 46, .n = 100, .file_size = 300, .offset = 200};
  f = add();
  f->len = proto_put_file_data_hdr(f->b, &d);
  fill(f->b + f->len, 100, 6);
  f->len += 100;
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.type == PROTO_T_FILE_DATA &&
        m.u.file_data.job_id == 46 && m.u.file_data.n == 100 &&
        m.u.file_data.file_size == 300 && m.u.file_data.offset == 200 &&
        m.u.file_data.data == f->b + PROTO_FILE_DATA_HDR_LEN);
  struct proto_file_data e = {.job_id = 47, .err = EIO};
  f = add();
  f->len = proto_put_file_data_hdr(f->b, &e);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.u.file_data.err == EIO);
  uint8_t mac[32];
  fill(mac, 32, 9);
  for (uint16_t t = PROTO_T_AUTH; t <= PROTO_T_AUTH_OK; t++) {
    f = add();
    f->len = proto_put_auth(f->b, t, mac);
    CHECK(f->len == PROTO_AUTH_LEN);
    CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.type == t &&
          memcmp(m.u.auth_mac, mac, 32) == 0);
  }
}

/* Malformed repair frames. */
static void test_rejects_repair(void)
{
  struct proto_msg m;
  uint8_t b[MAXF] = {0};
  size_t len;
  struct proto_extent_op o = {.job_id = 1, .eid = 1, .gen = 0};

  len = proto_put_extent_op(b, PROTO_T_EXTENT_FLUSH, &o); /* gen 0 */
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  o.gen = 1;
  len = proto_put_extent_op(b, PROTO_T_EXTENT_FLUSH, &o);
  b[20] = 1; /* pad */
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  o.eid = PROTO_MAX_EXTENTS;
  len = proto_put_extent_op(b, PROTO_T_EXTENT_FLUSH, &o);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  /* EXTENT_MARK: eid out of range, each pad byte, every wrong length
   * (EXTENT_FLUSH's 40 among them, with its tail zero). */
  o = (struct proto_extent_op){.job_id = 1, .eid = PROTO_MAX_EXTENTS};
  len = proto_put_extent_op(b, PROTO_T_EXTENT_MARK, &o);
  CHECK(len == 24 && proto_decode(b, len, 0, &m) == -EPROTO);
  o.eid = 1;
  for (int i = 20; i < 24; i++) {
    len = proto_put_extent_op(b, PROTO_T_EXTENT_MARK, &o);
    CHECK(proto_decode(b, len, 0, &m) == 0);
    b[i] = 0x80; /* pad */
    CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  }
  for (size_t l = PROTO_FRAME_HDR_LEN; l <= PROTO_EXTENT_FLUSH_LEN; l++) {
    if (l == PROTO_EXTENT_OP_LEN)
      continue;
    memset(b, 0, sizeof b);
    proto_put_extent_op(b, PROTO_T_EXTENT_MARK, &o);
    proto_le32(b, (uint32_t) l);
    CHECK(proto_decode(b, l, 0, &m) == -EPROTO);
  }
  /* 21-23 (EXTENT_CLOSE/REPAIR/REOPEN) are retired: unknown types, in
   * their old layouts (24 bytes; REPAIR 40). */
  for (uint16_t t = 21; t <= 23; t++) {
    size_t l = t == 22 ? 40 : 24;
    memset(b, 0, sizeof b);
    proto_le32(b, (uint32_t) l);
    proto_le16(b + 4, t);
    proto_le64(b + 8, 1);
    proto_le32(b + 16, 1);
    if (t == 22) { /* port 3810, IPv4 127.0.0.1 */
      proto_le16(b + 20, 3810);
      b[22] = 4;
      b[24] = 127, b[27] = 1;
    }
    CHECK(proto_decode(b, l, 0, &m) == -ENOTSUP);
    CHECK(strcmp(proto_type_name(t), "?") == 0);
  }
  /* FILE_REQ: len 0, len too big, unknown file. */
  struct proto_file_req q = {.job_id = 1, .len = 0};
  len = proto_put_file_req(b, &q);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  q.len = PROTO_MAX_JOB_BYTES + 1;
  len = proto_put_file_req(b, &q);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  q.len = 1;
  q.file = 2;
  len = proto_put_file_req(b, &q);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  /* FILE_DATA: data past the end of the file; error with data. */
  struct proto_file_data d = {
      .job_id = 1, .n = 10, .file_size = 15, .offset = 10};
  len = proto_put_file_data_hdr(b, &d) + 10;
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  d = (struct proto_file_data){.job_id = 1, .err = EIO, .n = 1, .file_size = 1};
  len = proto_put_file_data_hdr(b, &d) + 1;
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
}

/* Build one job frame of every type, decode it and check every field. */
static void build_and_roundtrip(void)
{
  struct proto_msg m;
  struct frame *f;

  /* WRITE with 3 blocks. */
  f = add();
  f->len = proto_put_write_hdr(f->b, 1000, 64, 3, BS);
  for (int i = 0; i < 3; i++) {
    struct proto_ctx c = {.version = (5ull << 32) | i,
                          .hash = 0xabcdef00u + i,
                          .flags = PROTO_CTX_PRESENT};
    fill(c.nonce, 12, 10 + i);
    fill(c.tag, 16, 20 + i);
    proto_ctx_put(f->b + f->len, &c);
    f->len += PROTO_CTX_LEN;
  }
  fill(f->b + f->len, 3 * BS, 99);
  f->len += 3 * BS;
  CHECK(proto_decode(f->b, f->len, BS, &m) == 0 && m.type == PROTO_T_WRITE);
  CHECK(m.u.io.job_id == 1000 && m.u.io.lba == 64 && m.u.io.n == 3);
  CHECK(m.u.io.data == f->b + PROTO_IO_HDR_LEN + 3 * PROTO_CTX_LEN);
  for (int i = 0; i < 3; i++) {
    struct proto_ctx c;
    uint8_t nonce[12];
    proto_ctx_get(m.u.io.ctxs + i * PROTO_CTX_LEN, &c);
    fill(nonce, 12, 10 + i);
    CHECK(c.version == ((5ull << 32) | i) && c.hash == 0xabcdef00u + i &&
          c.flags == PROTO_CTX_PRESENT && memcmp(c.nonce, nonce, 12) == 0);
  }
  /* The same frame is malformed under another block size or none. */
  CHECK(proto_decode(f->b, f->len, 0, &m) == -EPROTO);
  CHECK(proto_decode(f->b, f->len, 1024, &m) == -EPROTO);

  f = add();
  f->len = proto_put_read(f->b, 1001, 7, 4, 0);
  CHECK(proto_decode(f->b, f->len, BS, &m) == 0 && m.type == PROTO_T_READ &&
        m.u.io.job_id == 1001 && m.u.io.lba == 7 && m.u.io.n == 4 &&
        m.flags == 0);
  f = add();
  f->len = proto_put_read(f->b, 1007, 9, 5, PROTO_F_CTX_ONLY);
  CHECK(proto_decode(f->b, f->len, BS, &m) == 0 && m.type == PROTO_T_READ &&
        m.u.io.n == 5 && m.flags == PROTO_F_CTX_ONLY);
  f = add();
  f->len =
      proto_put_read(f->b, 1009, 9, 5, PROTO_F_CTX_ONLY | PROTO_F_VERSIONS);
  CHECK(proto_decode(f->b, f->len, BS, &m) == 0 && m.type == PROTO_T_READ &&
        m.flags == (PROTO_F_CTX_ONLY | PROTO_F_VERSIONS));
  f = add();
  f->len = proto_put_trim(f->b, 1002, 8, 2, (7ull << 32) | 9);
  CHECK(f->len == PROTO_TRIM_LEN);
  CHECK(proto_decode(f->b, f->len, BS, &m) == 0 && m.type == PROTO_T_TRIM &&
        m.u.io.n == 2 && m.u.io.version == ((7ull << 32) | 9));

  struct proto_flush fl = {.job_id = 1003, .flush_no = 44, .gen = 5};
  f = add();
  f->len = proto_put_flush(f->b, &fl);
  CHECK(proto_decode(f->b, f->len, BS, &m) == 0 && m.u.flush.job_id == 1003 &&
        m.u.flush.flush_no == 44 && m.u.flush.gen == 5);

  f = add();
  f->len = proto_put_job_done(f->b, 1004, ENOSPC);
  CHECK(proto_decode(f->b, f->len, BS, &m) == 0 &&
        m.u.job_done.job_id == 1004 && m.u.job_done.err == ENOSPC);

  f = add();
  f->len = proto_put_read_done_hdr(f->b, 1005, 0, 2, BS, 0);
  for (int i = 0; i < 2; i++) {
    struct proto_ctx c = {.version = 3, .flags = i ? PROTO_CTX_PRESENT : 0};
    proto_ctx_put(f->b + f->len, &c);
    f->len += PROTO_CTX_LEN;
  }
  fill(f->b + f->len, 2 * BS, 5);
  f->len += 2 * BS;
  CHECK(proto_decode(f->b, f->len, BS, &m) == 0 &&
        m.u.read_done.job_id == 1005 && m.u.read_done.n == 2 &&
        m.u.read_done.data == f->b + f->len - 2 * BS);

  /* Contexts only: n contexts, no data; a downstairs may say BAD. */
  f = add();
  f->len = proto_put_read_done_hdr(f->b, 1008, 0, 2, BS, PROTO_F_CTX_ONLY);
  for (int i = 0; i < 2; i++) {
    struct proto_ctx c = {.version = 4,
                          .flags = PROTO_CTX_PRESENT | (i ? PROTO_CTX_BAD : 0)};
    proto_ctx_put(f->b + f->len, &c);
    f->len += PROTO_CTX_LEN;
  }
  CHECK(f->len == PROTO_READ_DONE_HDR_LEN + 2 * PROTO_CTX_LEN);
  CHECK(proto_decode(f->b, f->len, BS, &m) == 0 &&
        m.flags == PROTO_F_CTX_ONLY && m.u.read_done.n == 2 &&
        m.u.read_done.data == NULL);
  /* ... which is malformed without the flag, and the flag elsewhere. */
  proto_le16(f->b + 6, 0);
  CHECK(proto_decode(f->b, f->len, BS, &m) == -EPROTO);
  proto_le16(f->b + 6, PROTO_F_CTX_ONLY);

  f = add();
  f->len = proto_put_read_done_hdr(f->b, 1006, EIO, 0, BS, 0);
  CHECK(proto_decode(f->b, f->len, BS, &m) == 0 && m.u.read_done.err == EIO &&
        m.u.read_done.n == 0);

  roundtrip_repair();
  roundtrip_map();
}

/* Specific malformations of job frames the decoder must catch. */
static void test_rejects(void)
{
  struct proto_msg m;
  uint8_t b[MAXF] = {0};
  size_t len;

  len = proto_put_read(b, 1, 0, 0, 0); /* n = 0 */
  CHECK(proto_decode(b, len, BS, &m) == -EPROTO);
  len = proto_put_read(b, 1, UINT64_MAX, 1, 0); /* lba + n overflows */
  CHECK(proto_decode(b, len, BS, &m) == -EPROTO);
  len = proto_put_read(b, 1, 0, PROTO_MAX_JOB_BYTES / BS + 1, 0); /* too big */
  CHECK(proto_decode(b, len, BS, &m) == -EPROTO);
  /* A TRIM carries no data: it may name far more than 4 MiB of blocks
   * (a whole 128 MiB extent of create's default geometry), up to its own
   * limit, and the splitter's limit is the decoder's. */
  len = proto_put_trim(b, 1, 0, 32768, 0);
  CHECK(proto_decode(b, len, BS, &m) == 0 && m.u.io.n == 32768);
  len = proto_put_trim(b, 1, 0, PROTO_MAX_TRIM_BLOCKS, 0);
  CHECK(proto_decode(b, len, BS, &m) == 0);
  len = proto_put_trim(b, 1, 0, PROTO_MAX_TRIM_BLOCKS + 1, 0);
  CHECK(proto_decode(b, len, BS, &m) == -EPROTO);
  CHECK(proto_max_job_blocks(PROTO_T_TRIM, BS) == PROTO_MAX_TRIM_BLOCKS);
  CHECK(proto_max_job_blocks(PROTO_T_WRITE, BS) == PROTO_MAX_JOB_BYTES / BS);
  CHECK(proto_max_job_blocks(PROTO_T_READ, 512) == PROTO_MAX_JOB_BLOCKS);
  len = proto_put_write_hdr(b, 1, 0,
                            proto_max_job_blocks(PROTO_T_WRITE, BS) + 1, BS);
  CHECK(proto_decode(b, len, BS, &m) == -EPROTO);

  /* WRITE with a context lacking PRESENT. */
  len = proto_put_write_hdr(b, 1, 0, 1, BS);
  struct proto_ctx c = {.flags = 0};
  proto_ctx_put(b + len, &c);
  len += PROTO_CTX_LEN + BS;
  CHECK(proto_decode(b, len, BS, &m) == -EPROTO);

  /* CTX_ONLY on a frame other than READ / READ_DONE, VERSIONS without
   * CTX_ONLY or on anything but READ, or a WRITE context claiming BAD. */
  len = proto_put_trim(b, 1, 0, 1, 0);
  proto_le16(b + 6, PROTO_F_CTX_ONLY);
  CHECK(proto_decode(b, len, BS, &m) == -EPROTO);
  len = proto_put_read(b, 1, 0, 1, PROTO_F_VERSIONS);
  CHECK(proto_decode(b, len, BS, &m) == -EPROTO);
  len = proto_put_read_done_hdr(b, 1, 0, 1, BS, PROTO_F_CTX_ONLY);
  memset(b + len, 0, PROTO_CTX_LEN);
  proto_le32(b, (uint32_t) (len + PROTO_CTX_LEN));
  CHECK(proto_decode(b, len + PROTO_CTX_LEN, BS, &m) == 0);
  proto_le16(b + 6, PROTO_F_CTX_ONLY | PROTO_F_VERSIONS);
  CHECK(proto_decode(b, len + PROTO_CTX_LEN, BS, &m) == -EPROTO);
  len = proto_put_write_hdr(b, 1, 0, 1, BS);
  c = (struct proto_ctx){.flags = PROTO_CTX_PRESENT | PROTO_CTX_BAD};
  proto_ctx_put(b + len, &c);
  len += PROTO_CTX_LEN + BS;
  CHECK(proto_decode(b, len, BS, &m) == -EPROTO);

  /* READ_DONE with an error must carry no blocks. */
  len = proto_put_read_done_hdr(b, 1, EIO, 1, BS, 0);
  len += PROTO_CTX_LEN + BS;
  memset(b + PROTO_READ_DONE_HDR_LEN, 0, PROTO_CTX_LEN + BS);
  CHECK(proto_decode(b, len, BS, &m) == -EPROTO);

  /* A non-zero pad byte. */
  len = proto_put_job_done(b, 1, 0);
  b[21] = 1;
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
}

/* SNAPSHOT (46) and SNAPSHOTS (47): round trips, the bytes of the op and
 * name, and the strict checks (ops, names, numbers, pad, counts). */
static void test_snapshot(void)
{
  struct proto_msg m;
  uint8_t t[PROTO_SNAPSHOT_LEN];
  struct proto_snapshot s = {.job_id = 7,
                             .op = PROTO_SNAP_CREATE,
                             .flush_no = 11,
                             .gen = 3,
                             .time = 1764700000};
  snprintf(s.name, sizeof s.name, "nightly-1");
  CHECK(proto_put_snapshot(t, &s) == 112 && proto_rd16(t + 4) == 46);
  CHECK(t[16] == 1 && memcmp(t + 48, "nightly-1", 10) == 0);
  CHECK(proto_decode(t, sizeof t, 0, &m) == 0 && m.type == PROTO_T_SNAPSHOT &&
        m.u.snap.job_id == 7 && m.u.snap.op == PROTO_SNAP_CREATE &&
        m.u.snap.flush_no == 11 && m.u.snap.gen == 3 &&
        m.u.snap.time == 1764700000 && strcmp(m.u.snap.name, "nightly-1") == 0);
  CHECK(strcmp(proto_type_name(PROTO_T_SNAPSHOT), "SNAPSHOT") == 0);
  uint8_t u[PROTO_SNAPSHOT_LEN];
#define MUT(stmt)                                       \
  do {                                                  \
    memcpy(u, t, sizeof t);                             \
    stmt;                                               \
    CHECK(proto_decode(u, sizeof u, 0, &m) == -EPROTO); \
  } while (0)
  MUT(u[16] = 0); /* no such op */
  MUT(u[16] = 4);
  MUT(u[17] = 1);               /* pad */
  MUT(proto_le64(u + 32, 0));   /* create without a generation */
  MUT(memset(u + 48, 0, 64));   /* create without a name */
  MUT(u[48 + 9 + 1] = 'x');     /* bytes after the NUL */
  MUT(memset(u + 48, 'a', 64)); /* no NUL */
  MUT(u[48] = ' ');             /* not printable */
  MUT(u[48] = 0x80);
  CHECK(proto_decode(t, sizeof t - 1, 0, &m) == -EPROTO);
  /* delete: a name, no numbers; list: neither. */
  s.op = PROTO_SNAP_DELETE;
  proto_put_snapshot(t, &s);
  CHECK(proto_decode(t, sizeof t, 0, &m) == -EPROTO);
  s.flush_no = s.gen = s.time = 0;
  proto_put_snapshot(t, &s);
  CHECK(proto_decode(t, sizeof t, 0, &m) == 0 &&
        m.u.snap.op == PROTO_SNAP_DELETE);
  s.op = PROTO_SNAP_LIST;
  proto_put_snapshot(t, &s);
  CHECK(proto_decode(t, sizeof t, 0, &m) == -EPROTO);
  s.name[0] = 0;
  proto_put_snapshot(t, &s);
  CHECK(proto_decode(t, sizeof t, 0, &m) == 0 &&
        m.u.snap.op == PROTO_SNAP_LIST);

  /* SNAPSHOTS with two entries. */
  uint8_t f[PROTO_SNAPSHOTS_HDR_LEN + 2 * PROTO_SNAP_ENTRY_LEN];
  struct proto_snap_entry e = {.seq = 2,
                               .extent_count = 8,
                               .copies = 3,
                               .time = 5,
                               .gen = 6,
                               .flush = 7,
                               .bytes = 1ull << 40};
  snprintf(e.name, sizeof e.name, "a.b_c-D");
  CHECK(proto_put_snapshots_hdr(f, 9, 0, 2) == 24 && proto_rd32(f) == sizeof f);
  proto_snap_entry_put(f + 24, &e);
  e.seq = 3;
  proto_snap_entry_put(f + 24 + 112, &e);
  CHECK(proto_decode(f, sizeof f, 0, &m) == 0 && m.type == PROTO_T_SNAPSHOTS &&
        m.u.snaps.job_id == 9 && m.u.snaps.n == 2 && m.u.snaps.err == 0);
  struct proto_snap_entry g;
  proto_snap_entry_get(m.u.snaps.entries + 112, &g);
  CHECK(g.seq == 3 && g.extent_count == 8 && g.copies == 3 && g.time == 5 &&
        g.gen == 6 && g.flush == 7 && g.bytes == 1ull << 40 &&
        strcmp(g.name, "a.b_c-D") == 0);
  CHECK(proto_decode(f, sizeof f - 1, 0, &m) == -EPROTO);
  f[24 + 108] = 1; /* pad */
  CHECK(proto_decode(f, sizeof f, 0, &m) == -EPROTO);
  f[24 + 108] = 0;
  f[24] = 0; /* an empty name */
  CHECK(proto_decode(f, sizeof f, 0, &m) == -EPROTO);
  proto_put_snapshots_hdr(f, 9, 5, 0); /* an error carries no entries */
  CHECK(proto_decode(f, 24, 0, &m) == 0 && m.u.snaps.err == 5);
  proto_le32(f + 20, 1);
  proto_le32(f, 24 + 112);
  CHECK(proto_decode(f, 24 + 112, 0, &m) == -EPROTO);
#undef MUT
}

/* The names both sides accept (a directory entry under snapshots/). */
static void test_snap_name(void)
{
  char n[PROTO_SNAP_NAME_LEN + 1];
  CHECK(proto_snap_name_ok("a.b_c-D9"));
  CHECK(proto_snap_name_ok("x.") && proto_snap_name_ok("-"));
  CHECK(!proto_snap_name_ok(""));
  CHECK(!proto_snap_name_ok(".hidden") && !proto_snap_name_ok(".."));
  CHECK(!proto_snap_name_ok("a/b") && !proto_snap_name_ok("a b"));
  CHECK(!proto_snap_name_ok("caf\xc3\xa9") && !proto_snap_name_ok("t\tab"));
  memset(n, 'x', sizeof n);
  n[PROTO_SNAP_NAME_LEN - 1] = '\0'; /* the longest */
  CHECK(proto_snap_name_ok(n));
  n[PROTO_SNAP_NAME_LEN - 1] = 'x';
  n[PROTO_SNAP_NAME_LEN] = '\0'; /* one too long */
  CHECK(!proto_snap_name_ok(n));
}

int main(void)
{
  build_and_roundtrip();
  test_rejects();
  test_rejects_repair();
  test_rejects_map();
  test_prefixes_and_mutations();
  test_snapshot();
  test_snap_name();
  return test_done("test_proto_job");
}
