/* crucible-c: the job frames of the wire codec (see proto.h): what an
 * upstairs asks of a downstairs once active (IO, flushes, block status,
 * repair and clone copies, snapshots) and the replies.  The frame header,
 * the session and admin frames and the dispatch are in proto.c, with the
 * rule both halves keep: every pad byte zero, every boolean 0 or 1.
 *
 * Byte layout of every fixed header, offsets from the start of the frame
 * (0 u32 length, 4 u16 type, 6 u16 flags: proto.c):
 *
 *   WRITE, READ  8 u64 job_id, 16 u64 lba, 24 u32 n, 28 u32 pad    (32)
 *             WRITE continues with n contexts, then n blocks
 *   TRIM      8 u64 job_id, 16 u64 lba, 24 u32 n, 28 u32 pad,
 *             32 u64 version                                      (40)
 *   FLUSH     8 u64 job_id, 16 u64 flush_no, 24 u64 gen            (32)
 *   JOB_DONE  8 u64 job_id, 16 i32 err, 20 u32 pad                 (24)
 *   READ_DONE 8 u64 job_id, 16 i32 err, 20 u32 n; n contexts, n blocks
 *             (CTX_ONLY: n contexts only)
 *   EXTENT_FLUSH  8 u64 job_id, 16 u32 eid, 20 u32 pad, 24 u64 flush_no,
 *             32 u64 gen (!= 0)                                   (40)
 *   EXTENT_MARK  8 u64 job_id, 16 u32 eid, 20 u32 pad             (24)
 *   EXTEND    8 u64 job_id, 16 u32 extent_count (1..PROTO_MAX_EXTENTS-1),
 *             20 u32 pad                                          (24)
 *   (types 21-23, EXTENT_CLOSE/REPAIR/REOPEN, retired in version 3:
 *   unknown types, -ENOTSUP)
 *   FILE_REQ  8 u64 job_id, 16 u32 eid, 20 u8 file (0 data, 1 db),
 *             21 pad[3], 24 u64 offset, 32 u32 len (1..4 MiB), 36 u32 pad
 *                                                                 (40)
 *   FILE_DATA 8 u64 job_id, 16 i32 err, 20 u32 n (<= 4 MiB, 0 if err),
 *             24 u64 file_size, 32 u64 offset; n bytes        (40 + n)
 *   EXTENT_MAP_REQ  8 u64 job_id, 16 u64 lba, 24 u32 n (1..1M), 28 u32 pad
 *                                                                 (32)
 *   EXTENT_MAP  8 u64 job_id, 16 i32 err, 20 u32 n (0 if err); bitmap of
 *             (n + 7) / 8 bytes, bit i = block lba + i may hold data,
 *             unused high bits of the last byte zero      (24 + bitmap)
 *   SNAPSHOT  8 u64 job_id, 16 u8 op (1 create, 2 delete, 3 list, 4 open),
 *             17 pad[7], 24 u64 flush_no, 32 u64 gen, 40 u64 time,
 *             48 name[64] (create, delete, open: a snapshot name, NUL-
 *             terminated, zero-padded; list: all zero; delete and list
 *             carry no numbers, nor does open; create gen != 0)  (112)
 *   SNAPSHOTS 8 u64 job_id, 16 i32 err, 20 u32 n (<= 64, 0 if err);
 *             n * {0 name[64], 64 u32 seq, 68 u32 extent_count,
 *             72 u64 time, 80 u64 gen, 88 u64 flush, 96 u64 bytes,
 *             104 u32 copies, 108 u32 pad}                 (24 + 112n)
 *   context   0 u64 version, 8 u64 hash, 16 nonce[12], 28 tag[16],
 *             44 u32 flags                                        (48)
 */
#include "proto_int.h"

#include <errno.h>
#include <string.h>

/* WRITE, READ and TRIM headers. */
static size_t put_io(uint8_t *buf, uint16_t type, uint64_t len, uint64_t job_id,
                     uint64_t lba, uint32_t n)
{
  put_hdr(buf, (uint32_t) len, type);
  proto_le64(buf + 8, job_id);
  proto_le64(buf + 16, lba);
  proto_le32(buf + 24, n);
  proto_le32(buf + 28, 0);
  return PROTO_IO_HDR_LEN;
}

size_t proto_put_write_hdr(uint8_t *buf, uint64_t job_id, uint64_t lba,
                           uint32_t n, uint32_t block_size)
{
  uint64_t len = PROTO_IO_HDR_LEN + (uint64_t) n * (PROTO_CTX_LEN + block_size);
  return put_io(buf, PROTO_T_WRITE, len, job_id, lba, n);
}

size_t proto_put_read(uint8_t *buf, uint64_t job_id, uint64_t lba, uint32_t n,
                      uint16_t flags)
{
  size_t len = put_io(buf, PROTO_T_READ, PROTO_IO_HDR_LEN, job_id, lba, n);
  proto_le16(buf + 6, flags);
  return len;
}

size_t proto_put_trim(uint8_t *buf, uint64_t job_id, uint64_t lba, uint32_t n,
                      uint64_t version)
{
  put_io(buf, PROTO_T_TRIM, PROTO_TRIM_LEN, job_id, lba, n);
  proto_le64(buf + 32, version);
  return PROTO_TRIM_LEN;
}

size_t proto_put_flush(uint8_t *buf, const struct proto_flush *f)
{
  put_hdr(buf, PROTO_FLUSH_LEN, PROTO_T_FLUSH);
  proto_le64(buf + 8, f->job_id);
  proto_le64(buf + 16, f->flush_no);
  proto_le64(buf + 24, f->gen);
  return PROTO_FLUSH_LEN;
}

size_t proto_put_job_done(uint8_t *buf, uint64_t job_id, int32_t err)
{
  put_hdr(buf, PROTO_JOB_DONE_LEN, PROTO_T_JOB_DONE);
  proto_le64(buf + 8, job_id);
  proto_le32(buf + 16, (uint32_t) err);
  proto_le32(buf + 20, 0);
  return PROTO_JOB_DONE_LEN;
}

size_t proto_put_read_done_hdr(uint8_t *buf, uint64_t job_id, int32_t err,
                               uint32_t n, uint32_t block_size, uint16_t flags)
{
  uint32_t bs = flags & PROTO_F_CTX_ONLY ? 0 : block_size;
  uint64_t len = PROTO_READ_DONE_HDR_LEN + (uint64_t) n * (PROTO_CTX_LEN + bs);
  put_hdr(buf, (uint32_t) len, PROTO_T_READ_DONE);
  proto_le16(buf + 6, flags);
  proto_le64(buf + 8, job_id);
  proto_le32(buf + 16, (uint32_t) err);
  proto_le32(buf + 20, n);
  return PROTO_READ_DONE_HDR_LEN;
}

size_t proto_put_extent_map_req(uint8_t *buf, uint64_t job_id, uint64_t lba,
                                uint32_t n)
{
  return put_io(buf, PROTO_T_EXTENT_MAP_REQ, PROTO_EXTENT_MAP_REQ_LEN, job_id,
                lba, n);
}

size_t proto_put_extent_map_hdr(uint8_t *buf, uint64_t job_id, int32_t err,
                                uint32_t n)
{
  size_t len = PROTO_EXTENT_MAP_HDR_LEN + proto_map_bytes(n);
  put_hdr(buf, (uint32_t) len, PROTO_T_EXTENT_MAP);
  proto_le64(buf + 8, job_id);
  proto_le32(buf + 16, (uint32_t) err);
  proto_le32(buf + 20, n);
  return PROTO_EXTENT_MAP_HDR_LEN;
}

size_t proto_put_extent_op(uint8_t *buf, uint16_t type,
                           const struct proto_extent_op *o)
{
  size_t len = type == PROTO_T_EXTENT_FLUSH ? PROTO_EXTENT_FLUSH_LEN
                                            : PROTO_EXTENT_OP_LEN;
  memset(buf, 0, len);
  put_hdr(buf, (uint32_t) len, type);
  proto_le64(buf + 8, o->job_id);
  proto_le32(buf + 16, o->eid);
  if (type == PROTO_T_EXTENT_FLUSH) {
    proto_le64(buf + 24, o->flush_no);
    proto_le64(buf + 32, o->gen);
  }
  return len;
}

size_t proto_put_snapshot(uint8_t *buf, const struct proto_snapshot *s)
{
  memset(buf, 0, PROTO_SNAPSHOT_LEN);
  put_hdr(buf, PROTO_SNAPSHOT_LEN, PROTO_T_SNAPSHOT);
  proto_le64(buf + 8, s->job_id);
  buf[16] = s->op;
  proto_le64(buf + 24, s->flush_no);
  proto_le64(buf + 32, s->gen);
  proto_le64(buf + 40, s->time);
  size_t n = strnlen(s->name, PROTO_SNAP_NAME_LEN - 1);
  memcpy(buf + 48, s->name, n);
  return PROTO_SNAPSHOT_LEN;
}

size_t proto_put_snapshots_hdr(uint8_t *buf, uint64_t job_id, int32_t err,
                               uint32_t n)
{
  memset(buf, 0, PROTO_SNAPSHOTS_HDR_LEN);
  put_hdr(
      buf,
      (uint32_t) (PROTO_SNAPSHOTS_HDR_LEN + (size_t) n * PROTO_SNAP_ENTRY_LEN),
      PROTO_T_SNAPSHOTS);
  proto_le64(buf + 8, job_id);
  proto_le32(buf + 16, (uint32_t) err);
  proto_le32(buf + 20, n);
  return PROTO_SNAPSHOTS_HDR_LEN;
}

void proto_snap_entry_put(uint8_t *p, const struct proto_snap_entry *e)
{
  memset(p, 0, PROTO_SNAP_ENTRY_LEN);
  memcpy(p, e->name, strnlen(e->name, PROTO_SNAP_NAME_LEN - 1));
  proto_le32(p + 64, e->seq);
  proto_le32(p + 68, e->extent_count);
  proto_le64(p + 72, e->time);
  proto_le64(p + 80, e->gen);
  proto_le64(p + 88, e->flush);
  proto_le64(p + 96, e->bytes);
  proto_le32(p + 104, e->copies);
}

void proto_snap_entry_get(const uint8_t *p, struct proto_snap_entry *e)
{
  memset(e, 0, sizeof *e);
  memcpy(e->name, p, PROTO_SNAP_NAME_LEN - 1);
  e->seq = proto_rd32(p + 64);
  e->extent_count = proto_rd32(p + 68);
  e->time = proto_rd64(p + 72);
  e->gen = proto_rd64(p + 80);
  e->flush = proto_rd64(p + 88);
  e->bytes = proto_rd64(p + 96);
  e->copies = proto_rd32(p + 104);
}

size_t proto_put_file_req(uint8_t *buf, const struct proto_file_req *r)
{
  memset(buf, 0, PROTO_FILE_REQ_LEN);
  put_hdr(buf, PROTO_FILE_REQ_LEN, PROTO_T_FILE_REQ);
  proto_le64(buf + 8, r->job_id);
  proto_le32(buf + 16, r->eid);
  buf[20] = r->file;
  proto_le64(buf + 24, r->offset);
  proto_le32(buf + 32, r->len);
  return PROTO_FILE_REQ_LEN;
}

size_t proto_put_file_data_hdr(uint8_t *buf, const struct proto_file_data *d)
{
  put_hdr(buf, PROTO_FILE_DATA_HDR_LEN + d->n, PROTO_T_FILE_DATA);
  proto_le64(buf + 8, d->job_id);
  proto_le32(buf + 16, (uint32_t) d->err);
  proto_le32(buf + 20, d->n);
  proto_le64(buf + 24, d->file_size);
  proto_le64(buf + 32, d->offset);
  return PROTO_FILE_DATA_HDR_LEN;
}

void proto_ctx_put(uint8_t *p, const struct proto_ctx *c)
{
  proto_le64(p, c->version);
  proto_le64(p + 8, c->hash);
  memcpy(p + 16, c->nonce, PROTO_NONCE_LEN);
  memcpy(p + 28, c->tag, PROTO_TAG_LEN);
  proto_le32(p + 44, c->flags);
}

void proto_ctx_get(const uint8_t *p, struct proto_ctx *c)
{
  c->version = proto_rd64(p);
  c->hash = proto_rd64(p + 8);
  memcpy(c->nonce, p + 16, PROTO_NONCE_LEN);
  memcpy(c->tag, p + 28, PROTO_TAG_LEN);
  c->flags = proto_rd32(p + 44);
}

/* n contexts at p must carry only known flag bits: PRESENT (required if
 * require_present, a WRITE) and, from a downstairs, BAD. */
static int check_ctxs(const uint8_t *p, uint32_t n, int require_present)
{
  uint32_t known = PROTO_CTX_PRESENT | (require_present ? 0 : PROTO_CTX_BAD);

  for (uint32_t i = 0; i < n; i++, p += PROTO_CTX_LEN) {
    uint32_t f = proto_rd32(p + 44);
    if (f & ~known)
      return -EPROTO;
    if (require_present && !(f & PROTO_CTX_PRESENT))
      return -EPROTO;
  }
  return 0;
}

static int dec_io(const uint8_t *b, size_t len, uint16_t type,
                  uint32_t block_size, struct proto_msg *m)
{
  struct proto_io *io = &m->u.io;
  if (len < PROTO_IO_HDR_LEN)
    return -EPROTO;
  io->job_id = proto_rd64(b + 8);
  io->lba = proto_rd64(b + 16);
  io->n = proto_rd32(b + 24);
  io->ctxs = io->data = NULL;
  if (proto_rd32(b + 28) || io->n == 0 ||
      io->n > proto_max_job_blocks(type, block_size) ||
      io->lba > UINT64_MAX - io->n)
    return -EPROTO;
  io->version = 0;
  if (type == PROTO_T_TRIM) {
    if (len != PROTO_TRIM_LEN)
      return -EPROTO;
    io->version = proto_rd64(b + 32);
    return 0;
  }
  if (type == PROTO_T_READ)
    return len == PROTO_IO_HDR_LEN ? 0 : -EPROTO;
  if (block_size == 0 ||
      len != PROTO_IO_HDR_LEN + (uint64_t) io->n * (PROTO_CTX_LEN + block_size))
    return -EPROTO;
  io->ctxs = b + PROTO_IO_HDR_LEN;
  io->data = io->ctxs + (size_t) io->n * PROTO_CTX_LEN;
  return check_ctxs(io->ctxs, io->n, 1);
}

static int dec_read_done(const uint8_t *b, size_t len, uint32_t block_size,
                         struct proto_msg *m)
{
  struct proto_read_done *r = &m->u.read_done;
  if (len < PROTO_READ_DONE_HDR_LEN)
    return -EPROTO;
  r->job_id = proto_rd64(b + 8);
  r->err = (int32_t) proto_rd32(b + 16);
  r->n = proto_rd32(b + 20);
  r->ctxs = r->data = NULL;
  if (r->err < 0)
    return -EPROTO;
  if (r->err)
    return (r->n == 0 && len == PROTO_READ_DONE_HDR_LEN) ? 0 : -EPROTO;
  uint32_t bs = m->flags & PROTO_F_CTX_ONLY ? 0 : block_size;
  if (r->n == 0 || block_size == 0 ||
      r->n > proto_max_job_blocks(PROTO_T_READ, block_size) ||
      len != PROTO_READ_DONE_HDR_LEN + (uint64_t) r->n * (PROTO_CTX_LEN + bs))
    return -EPROTO;
  r->ctxs = b + PROTO_READ_DONE_HDR_LEN;
  r->data = bs ? r->ctxs + (size_t) r->n * PROTO_CTX_LEN : NULL;
  return check_ctxs(r->ctxs, r->n, 0);
}

static int dec_map_req(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_io *io = &m->u.io;
  if (len != PROTO_EXTENT_MAP_REQ_LEN || proto_rd32(b + 28))
    return -EPROTO;
  io->job_id = proto_rd64(b + 8);
  io->lba = proto_rd64(b + 16);
  io->n = proto_rd32(b + 24);
  if (io->n == 0 || io->n > PROTO_MAX_MAP_BLOCKS ||
      io->lba > UINT64_MAX - io->n)
    return -EPROTO;
  return 0;
}

static int dec_map(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_extent_map *x = &m->u.map;
  if (len < PROTO_EXTENT_MAP_HDR_LEN)
    return -EPROTO;
  x->job_id = proto_rd64(b + 8);
  x->err = (int32_t) proto_rd32(b + 16);
  x->n = proto_rd32(b + 20);
  x->bits = NULL;
  if (x->err < 0)
    return -EPROTO;
  if (x->err)
    return x->n == 0 && len == PROTO_EXTENT_MAP_HDR_LEN ? 0 : -EPROTO;
  if (x->n == 0 || x->n > PROTO_MAX_MAP_BLOCKS ||
      len != PROTO_EXTENT_MAP_HDR_LEN + proto_map_bytes(x->n))
    return -EPROTO;
  x->bits = b + PROTO_EXTENT_MAP_HDR_LEN;
  /* Bits past n must be zero: one frame, one meaning. */
  if ((x->n & 7) && (x->bits[x->n / 8] >> (x->n & 7)))
    return -EPROTO;
  return 0;
}

/* EXTENT_FLUSH, EXTENT_MARK.  The eid is bounded here by the protocol
 * limit only; the downstairs answers one outside its region EINVAL. */
static int dec_extent_op(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_extent_op *o = &m->u.ext;
  size_t want = m->type == PROTO_T_EXTENT_FLUSH ? PROTO_EXTENT_FLUSH_LEN
                                                : PROTO_EXTENT_OP_LEN;
  if (len != want || proto_rd32(b + 20))
    return -EPROTO;
  o->job_id = proto_rd64(b + 8);
  o->eid = proto_rd32(b + 16);
  if (o->eid >= PROTO_MAX_EXTENTS)
    return -EPROTO;
  if (m->type == PROTO_T_EXTENT_FLUSH) {
    o->flush_no = proto_rd64(b + 24);
    o->gen = proto_rd64(b + 32);
    return o->gen == 0 ? -EPROTO : 0;
  }
  return m->type == PROTO_T_EXTEND && o->eid == 0 ? -EPROTO : 0;
}

static int dec_file_req(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_file_req *r = &m->u.file_req;
  if (len != PROTO_FILE_REQ_LEN || !all_zero(b + 21, 3) || proto_rd32(b + 36))
    return -EPROTO;
  r->job_id = proto_rd64(b + 8);
  r->eid = proto_rd32(b + 16);
  r->file = b[20];
  r->offset = proto_rd64(b + 24);
  r->len = proto_rd32(b + 32);
  if (r->eid >= PROTO_MAX_EXTENTS || r->file > PROTO_FILE_DB || r->len == 0 ||
      r->len > PROTO_MAX_JOB_BYTES || r->offset > (1ull << 62))
    return -EPROTO;
  return 0;
}

static int dec_file_data(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_file_data *d = &m->u.file_data;
  if (len < PROTO_FILE_DATA_HDR_LEN)
    return -EPROTO;
  d->job_id = proto_rd64(b + 8);
  d->err = (int32_t) proto_rd32(b + 16);
  d->n = proto_rd32(b + 20);
  d->file_size = proto_rd64(b + 24);
  d->offset = proto_rd64(b + 32);
  d->data = b + PROTO_FILE_DATA_HDR_LEN;
  if (d->err < 0 || (d->err && d->n) || d->n > PROTO_MAX_JOB_BYTES ||
      len != PROTO_FILE_DATA_HDR_LEN + (size_t) d->n ||
      d->file_size > (1ull << 62) || d->offset > d->file_size ||
      d->n > d->file_size - d->offset)
    return -EPROTO;
  return 0;
}

/* A name field: printable non-space ASCII, NUL-terminated within its
 * bytes and zero after; empty allowed (the caller decides). */
static int get_name(const uint8_t *p, char out[PROTO_SNAP_NAME_LEN])
{
  size_t n = 0;
  while (n < PROTO_SNAP_NAME_LEN && p[n])
    if (p[n] <= ' ' || p[n] >= 0x7f)
      return -EPROTO;
    else
      n++;
  if (n == PROTO_SNAP_NAME_LEN || !all_zero(p + n, PROTO_SNAP_NAME_LEN - n))
    return -EPROTO;
  memcpy(out, p, n + 1);
  return 0;
}

bool proto_snap_name_ok(const char *name)
{
  size_t n = strnlen(name, PROTO_SNAP_NAME_LEN);
  if (n == 0 || n >= PROTO_SNAP_NAME_LEN || name[0] == '.')
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char) name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

bool proto_snap_stored_ok(const char *name)
{
  return proto_snap_name_ok(name) ||
         (name[0] == '.' && proto_snap_name_ok(name + 1));
}

static int dec_snapshot(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_snapshot *s = &m->u.snap;
  if (len != PROTO_SNAPSHOT_LEN || !all_zero(b + 17, 7))
    return -EPROTO;
  s->job_id = proto_rd64(b + 8);
  s->op = b[16];
  s->flush_no = proto_rd64(b + 24);
  s->gen = proto_rd64(b + 32);
  s->time = proto_rd64(b + 40);
  if (get_name(b + 48, s->name) < 0)
    return -EPROTO;
  switch (s->op) {
  case PROTO_SNAP_CREATE: return s->name[0] && s->gen ? 0 : -EPROTO;
  case PROTO_SNAP_DELETE:
  case PROTO_SNAP_OPEN:
    return s->name[0] && !s->flush_no && !s->gen && !s->time ? 0 : -EPROTO;
  case PROTO_SNAP_LIST:
    return !s->name[0] && !s->flush_no && !s->gen && !s->time ? 0 : -EPROTO;
  default: return -EPROTO;
  }
}

static int dec_snapshots(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_snapshots *s = &m->u.snaps;
  if (len < PROTO_SNAPSHOTS_HDR_LEN)
    return -EPROTO;
  s->job_id = proto_rd64(b + 8);
  s->err = (int32_t) proto_rd32(b + 16);
  s->n = proto_rd32(b + 20);
  s->entries = b + PROTO_SNAPSHOTS_HDR_LEN;
  if (s->err < 0 || (s->err && s->n) || s->n > PROTO_MAX_SNAPS ||
      len != PROTO_SNAPSHOTS_HDR_LEN + (size_t) s->n * PROTO_SNAP_ENTRY_LEN)
    return -EPROTO;
  for (uint32_t i = 0; i < s->n; i++) {
    const uint8_t *e = s->entries + (size_t) i * PROTO_SNAP_ENTRY_LEN;
    char name[PROTO_SNAP_NAME_LEN];
    if (get_name(e, name) < 0 || !name[0] || proto_rd32(e + 108))
      return -EPROTO;
  }
  return 0;
}

int proto__decode_job(const uint8_t *b, size_t len, uint32_t block_size,
                      struct proto_msg *m)
{
  switch (m->type) {
  case PROTO_T_WRITE:
  case PROTO_T_READ:
  case PROTO_T_TRIM: return dec_io(b, len, m->type, block_size, m);
  case PROTO_T_FLUSH:
    if (len != PROTO_FLUSH_LEN)
      return -EPROTO;
    m->u.flush.job_id = proto_rd64(b + 8);
    m->u.flush.flush_no = proto_rd64(b + 16);
    m->u.flush.gen = proto_rd64(b + 24);
    return 0;
  case PROTO_T_JOB_DONE:
    if (len != PROTO_JOB_DONE_LEN || proto_rd32(b + 20))
      return -EPROTO;
    m->u.job_done.job_id = proto_rd64(b + 8);
    m->u.job_done.err = (int32_t) proto_rd32(b + 16);
    return m->u.job_done.err < 0 ? -EPROTO : 0;
  case PROTO_T_READ_DONE: return dec_read_done(b, len, block_size, m);
  case PROTO_T_EXTENT_FLUSH:
  case PROTO_T_EXTENT_MARK:
  case PROTO_T_EXTEND: return dec_extent_op(b, len, m);
  case PROTO_T_FILE_REQ: return dec_file_req(b, len, m);
  case PROTO_T_FILE_DATA: return dec_file_data(b, len, m);
  case PROTO_T_EXTENT_MAP_REQ: return dec_map_req(b, len, m);
  case PROTO_T_EXTENT_MAP: return dec_map(b, len, m);
  case PROTO_T_SNAPSHOT: return dec_snapshot(b, len, m);
  case PROTO_T_SNAPSHOTS: return dec_snapshots(b, len, m);
  default: return -ENOTSUP;
  }
}
