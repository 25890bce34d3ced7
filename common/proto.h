/* crucible-c: wire protocol between upstairs and downstairs.
 *
 * Every message is one frame:
 *
 *   u32 length   whole frame, header included, little-endian
 *   u16 type     PROTO_T_*
 *   u16 flags    PROTO_F_*: only READ and READ_DONE may carry
 *                PROTO_F_CTX_ONLY; receivers reject any other bit
 *   fixed header for the type (sizes PROTO_*_LEN below)
 *   bulk data    block contexts and/or block data, sizes derived from
 *                fixed-header fields and checked against `length`
 *
 * Encoders write into a caller-provided buffer and never allocate.
 * proto_decode() is strict: it checks the length against the type's exact
 * size (or the size implied by its counts), rejects unknown types, flags
 * and out-of-range fields, and never reads past `len`.  Decoded bulk
 * fields are pointers into the caller's frame buffer (zero copy): the
 * struct proto_msg is valid only while that buffer is.
 *
 * Users: plugin/client.c (upstairs side), downstairs/server.c, the tests
 * and the fuzzers.  No libuv, no nbdkit.
 */
#ifndef CRUCIBLE_PROTO_H
#define CRUCIBLE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 2: TRIM carries a version, READ may ask for contexts only, contexts may
 * say BAD (block-level reconciliation, docs/DESIGN.md).
 * 3: EXTENT_MARK (live repair through the upstairs); EXTENT_CLOSE,
 * EXTENT_REPAIR and EXTENT_REOPEN (the file-copy live repair) retired.
 * 4: EXTENT_MAP_REQ / EXTENT_MAP (block status: which blocks may hold
 * data); ACTIVATE names the uuid a region of no volume yet adopts;
 * EXTEND grows a region.
 * 5: HELLO role SNAPSHOT (a snapshot reader: SNAPSHOT op open, then
 * READs of that snapshot; no ACTIVATE, no fencing, nothing written). */
#define PROTO_VERSION 5

/* Hard cap on a frame: bounds every allocation a peer can cause. */
#define PROTO_MAX_FRAME (64u * 1024 * 1024)
/* Largest IO job: 4 MiB of data (plus contexts) fits well under the cap. */
#define PROTO_MAX_JOB_BYTES (4u * 1024 * 1024)
/* Most blocks one READ or WRITE job may name (with 512-byte blocks). */
#define PROTO_MAX_JOB_BLOCKS (PROTO_MAX_JOB_BYTES / 512)
/* Most blocks one TRIM may name: it carries no data, so only the
 * downstairs' per-job work bounds it (one transaction, one hole punch, a
 * list of at most this many blocks).  1M blocks: 4 GiB with 4 KiB blocks,
 * more than any extent `create` makes by default. */
#define PROTO_MAX_TRIM_BLOCKS (1u << 20)
/* Most blocks one EXTENT_MAP_REQ may name: its answer is a bitmap of one
 * bit per block (128 KiB at most), and it never crosses an extent. */
#define PROTO_MAX_MAP_BLOCKS (1u << 20)
#define PROTO_MAX_EXTENTS (1u << 24)
#define PROTO_MAX_MSG 1024 /* error text */

#define PROTO_FRAME_HDR_LEN 8

/* Frame flag: a READ that asks for the blocks' contexts only, and its
 * READ_DONE, which then carries n contexts and no data.  Reconciliation
 * compares replicas block by block this way without moving data. */
#define PROTO_F_CTX_ONLY 1u
/* READ only, with CTX_ONLY: the contexts from the metadata alone (per
 * block its newest version, written or trimmed; no data read, never BAD):
 * the upstairs' freshness check of the replicas it reads no data from. */
#define PROTO_F_VERSIONS 2u

enum proto_type {
  PROTO_T_HELLO = 1,
  PROTO_T_HELLO_OK = 2,
  PROTO_T_ERROR = 3, /* handshake/activation refused; text reason */
  PROTO_T_EXTENT_STATES_REQ = 4,
  PROTO_T_EXTENT_STATES = 5,
  PROTO_T_ACTIVATE = 6,
  PROTO_T_ACTIVATE_OK = 7,
  PROTO_T_NO_LONGER_ACTIVE = 8,
  PROTO_T_WRITE = 10,
  PROTO_T_READ = 11,
  PROTO_T_FLUSH = 12,
  PROTO_T_TRIM = 13,
  PROTO_T_JOB_DONE = 14,  /* answer to WRITE, FLUSH, TRIM */
  PROTO_T_READ_DONE = 15, /* answer to READ */
  PROTO_T_PING = 16,
  PROTO_T_PONG = 17,
  /* One extent: upstairs -> downstairs (answered by JOB_DONE). */
  PROTO_T_EXTENT_FLUSH = 20, /* make one extent clean and durable */
  /* 21..23: EXTENT_CLOSE, EXTENT_REPAIR, EXTENT_REOPEN, retired in
   * version 3 (the file-copy live repair; a downstairs rejects them as
   * unknown types): never reuse the numbers. */
  /* Repair peer (`clone`) -> source downstairs. */
  PROTO_T_FILE_REQ = 24,  /* a chunk of an extent file */
  PROTO_T_FILE_DATA = 25, /* its answer */
  /* Live repair: upstairs -> the downstairs being repaired. */
  PROTO_T_EXTENT_MARK = 26, /* dirty until EXTENT_FLUSH: FLUSH skips it */
  /* 27..29 reserved for repair. */
  /* Authentication (common/auth.h), right after HELLO_OK. */
  PROTO_T_AUTH = 30,    /* client proof */
  PROTO_T_AUTH_OK = 31, /* server proof */
  /* 32..39 reserved for auth. */
  /* Block status: upstairs -> downstairs, ordered like a READ. */
  PROTO_T_EXTENT_MAP_REQ = 41, /* which blocks of a range may hold data */
  PROTO_T_EXTENT_MAP = 42,     /* its answer: a bitmap */
  /* Version 4, from the active upstairs (answered by JOB_DONE): grow the
   * region to a number of extents (the eid field of an extent op, the
   * same 24 bytes as EXTENT_MARK); a barrier like FLUSH. */
  PROTO_T_EXTEND = 45,
  PROTO_T_STATUS_REQ = 43, /* a status peer's one question */
  PROTO_T_STATUS = 44,     /* its answer (struct proto_status) */
  /* Version 4, from the active upstairs: a snapshot operation (create
   * and delete are barriers answered by JOB_DONE; list is answered by
   * SNAPSHOTS). */
  PROTO_T_SNAPSHOT = 46,
  PROTO_T_SNAPSHOTS = 47,
  PROTO_T_MAX_ = 48
};

enum proto_role {
  PROTO_ROLE_UPSTAIRS = 1,
  PROTO_ROLE_REPAIR_PEER = 2,
  PROTO_ROLE_STATUS = 3, /* `crucible-downstairs status`: STATUS_REQ only */
  /* Version 5, a snapshot reader (`snapshot=NAME`): after HELLO_OK (and
   * AUTH) one SNAPSHOT op open naming the snapshot, answered by SNAPSHOTS
   * (its one entry, or ENOENT and none); then READs only, answered from
   * that snapshot (the chain rule); every other job EROFS.  It takes no
   * generation and fences nobody. */
  PROTO_ROLE_SNAPSHOT = 4
};

/* Fixed header lengths (frame header included). */
#define PROTO_HELLO_LEN (PROTO_FRAME_HDR_LEN + 72)
#define PROTO_HELLO_OK_LEN (PROTO_FRAME_HDR_LEN + 128)
#define PROTO_ERROR_HDR_LEN (PROTO_FRAME_HDR_LEN + 16) /* + text */
#define PROTO_EXTENT_STATES_REQ_LEN PROTO_FRAME_HDR_LEN
#define PROTO_EXTENT_STATES_HDR_LEN (PROTO_FRAME_HDR_LEN + 8) /* + 24*n */
#define PROTO_EXTENT_STATE_LEN 24
#define PROTO_ACTIVATE_LEN (PROTO_FRAME_HDR_LEN + 56)
#define PROTO_ACTIVATE_OK_LEN (PROTO_FRAME_HDR_LEN + 8)
#define PROTO_NO_LONGER_ACTIVE_LEN (PROTO_FRAME_HDR_LEN + 8)
#define PROTO_IO_HDR_LEN (PROTO_FRAME_HDR_LEN + 24) /* WRITE, READ */
#define PROTO_TRIM_LEN (PROTO_FRAME_HDR_LEN + 32)
#define PROTO_FLUSH_LEN (PROTO_FRAME_HDR_LEN + 24)
#define PROTO_JOB_DONE_LEN (PROTO_FRAME_HDR_LEN + 16)
#define PROTO_READ_DONE_HDR_LEN (PROTO_FRAME_HDR_LEN + 16)
#define PROTO_PING_LEN (PROTO_FRAME_HDR_LEN + 8)
#define PROTO_CTX_LEN 48
#define PROTO_EXTENT_FLUSH_LEN (PROTO_FRAME_HDR_LEN + 32)
#define PROTO_EXTENT_OP_LEN (PROTO_FRAME_HDR_LEN + 16) /* EXTENT_MARK */
#define PROTO_FILE_REQ_LEN (PROTO_FRAME_HDR_LEN + 32)
#define PROTO_FILE_DATA_HDR_LEN (PROTO_FRAME_HDR_LEN + 32) /* + n bytes */
#define PROTO_AUTH_LEN (PROTO_FRAME_HDR_LEN + 32)          /* AUTH, AUTH_OK */
#define PROTO_EXTENT_MAP_REQ_LEN PROTO_IO_HDR_LEN
#define PROTO_EXTENT_MAP_HDR_LEN (PROTO_FRAME_HDR_LEN + 16) /* + bitmap */
#define PROTO_STATUS_REQ_LEN PROTO_FRAME_HDR_LEN
#define PROTO_STATUS_PEER_LEN 64 /* NUL-terminated, zero-padded */
#define PROTO_STATUS_LEN (PROTO_FRAME_HDR_LEN + 160)
#define PROTO_SNAPSHOT_LEN (PROTO_FRAME_HDR_LEN + 104)
#define PROTO_SNAPSHOTS_HDR_LEN (PROTO_FRAME_HDR_LEN + 16) /* + 112 * n */
#define PROTO_SNAP_ENTRY_LEN 112
#define PROTO_SNAP_NAME_LEN 64 /* NUL-terminated, zero-padded */
#define PROTO_MAX_SNAPS 64     /* entries in one SNAPSHOTS */

#define PROTO_UUID_LEN 16
#define PROTO_NONCE_LEN 12
#define PROTO_TAG_LEN 16
#define PROTO_AUTH_NONCE_LEN 32

/* Per-block context: what the downstairs stores beside each block. */
#define PROTO_CTX_PRESENT 1u /* block has been written (else: zeroes) */
/* From a downstairs only: none of the block's contexts matches the bytes
 * it holds (a crash between flushes, bit rot): never a copy source. */
#define PROTO_CTX_BAD 2u
/* A context without PRESENT is a zero block; its version is that of the
 * TRIM that made it (0: never written, or trimmed before the last flush). */
struct proto_ctx {
  uint64_t version;               /* (gen << 32) | seq, authenticated */
  uint64_t hash;                  /* XXH3-64, see crypt_hash_*() */
  uint8_t nonce[PROTO_NONCE_LEN]; /* zero on unencrypted regions */
  uint8_t tag[PROTO_TAG_LEN];     /* zero on unencrypted regions */
  uint32_t flags;                 /* PROTO_CTX_* */
};

/* Key check value: a GCM tag over a fixed string, see crypt_kcv_*(). */
struct proto_kcv {
  uint8_t nonce[PROTO_NONCE_LEN];
  uint8_t tag[PROTO_TAG_LEN];
};

struct proto_extent_state {
  uint64_t gen;
  uint64_t flush;
  uint8_t dirty;
};

/* Region geometry as the downstairs reports it. */
struct proto_region {
  uint32_t block_size;
  uint32_t extent_count;
  uint64_t extent_size; /* blocks per extent */
  uint8_t uuid[PROTO_UUID_LEN];
  uint8_t encrypted;
};

struct proto_hello {
  uint32_t version;
  uint8_t role, read_only, encrypted;
  uint8_t uuid[PROTO_UUID_LEN]; /* all zero: "tell me" (first contact) */
  uint64_t session_id;
  uint64_t gen;
  uint8_t auth_nonce[PROTO_AUTH_NONCE_LEN]; /* client nonce (auth.h) */
};

struct proto_hello_ok {
  uint32_t version;
  struct proto_region region;
  uint8_t has_kcv;
  struct proto_kcv kcv;
  uint64_t highest_gen;  /* highest generation this region ever accepted */
  uint8_t auth_required; /* AUTH must follow before anything else */
  uint8_t auth_nonce[PROTO_AUTH_NONCE_LEN]; /* server nonce (auth.h) */
  uint8_t instance[PROTO_UUID_LEN]; /* random id of this region (replica),
                                       made at create time */
};

/* STATUS: a running downstairs, without the data key. */
struct proto_status {
  struct proto_region region;
  uint8_t instance[PROTO_UUID_LEN];
  uint64_t highest_gen;
  uint32_t connections; /* live connections, this one included */
  uint8_t has_active;   /* an upstairs session is activated */
  uint64_t active_session;
  uint64_t idle_ms; /* since its last frame (0 without one) */
  char active_peer[PROTO_STATUS_PEER_LEN]; /* its address, "" without */
};

/* SNAPSHOT: op create (name, and the flush it is taken with: flush_no,
 * gen != 0, the creator's time), delete (name), list (nothing) or, from
 * a snapshot reader before anything else, open (name; version 5). */
enum {
  PROTO_SNAP_CREATE = 1,
  PROTO_SNAP_DELETE = 2,
  PROTO_SNAP_LIST = 3,
  PROTO_SNAP_OPEN = 4
};
struct proto_snapshot {
  uint64_t job_id;
  uint8_t op;
  uint64_t flush_no, gen, time;   /* create only, else 0 */
  char name[PROTO_SNAP_NAME_LEN]; /* "" for list */
};
/* A snapshot name either side accepts: 1..PROTO_SNAP_NAME_LEN-1 of
 * [A-Za-z0-9._-], not starting with '.' (it names a directory entry). */
bool proto_snap_name_ok(const char *name);
/* A name a downstairs stores: a snapshot name, or a rollback marker
 * "." + a snapshot name (plugin/rollback.c: no user can give one). */
bool proto_snap_stored_ok(const char *name);
/* One snapshot in SNAPSHOTS. */
struct proto_snap_entry {
  char name[PROTO_SNAP_NAME_LEN];
  uint32_t seq, extent_count, copies;
  uint64_t time, gen, flush, bytes;
};
/* SNAPSHOTS: the answer to a list; entries point into the frame
 * (proto_snap_entry_get each of the n). */
struct proto_snapshots {
  uint64_t job_id;
  int32_t err;
  uint32_t n;
  const uint8_t *entries;
};

struct proto_error {
  int32_t err; /* positive errno */
  uint64_t job_id;
  char text[PROTO_MAX_MSG + 1]; /* NUL-terminated on decode */
};

struct proto_activate {
  uint64_t gen;
  uint8_t set_kcv; /* region has none yet: store this one */
  struct proto_kcv kcv;
  /* Version 4: the region has no volume uuid yet (made by `create`
   * without -u, HELLO_OK uuid all zero): adopt this one.  Never zero when
   * set; a region that has one refuses a different one. */
  uint8_t set_uuid;
  uint8_t uuid[PROTO_UUID_LEN];
};

/* WRITE, READ, TRIM. */
struct proto_io {
  uint64_t job_id;
  uint64_t lba;
  uint32_t n;          /* blocks, 1..proto_max_job_blocks(type) */
  uint64_t version;    /* TRIM: the trim's version (0 allowed) */
  const uint8_t *ctxs; /* WRITE: n encoded contexts (proto_ctx_get) */
  const uint8_t *data; /* WRITE: n * block_size bytes */
};

struct proto_flush {
  uint64_t job_id;
  uint64_t flush_no;
  uint64_t gen;
};

struct proto_job_done {
  uint64_t job_id;
  int32_t err; /* 0 or positive errno (EIO, ENOSPC, ...) */
};

struct proto_read_done {
  uint64_t job_id;
  int32_t err;
  uint32_t n;          /* 0 when err != 0 */
  const uint8_t *ctxs; /* n encoded contexts */
  const uint8_t *data; /* n * block_size bytes */
};

/* EXTENT_MAP: bit i (byte i / 8, bit i % 8) set = block lba + i may hold
 * data; clear = it reads as zeroes (never written, or trimmed).  n bits,
 * the unused high bits of the last byte zero; n == 0 when err != 0. */
struct proto_extent_map {
  uint64_t job_id;
  int32_t err;
  uint32_t n;
  const uint8_t *bits; /* (n + 7) / 8 bytes */
};

/* EXTENT_FLUSH, EXTENT_MARK. */
enum proto_file { PROTO_FILE_EXTENT = 0, PROTO_FILE_DB = 1 };
struct proto_extent_op {
  uint64_t job_id;
  uint32_t eid;
  uint64_t flush_no, gen; /* EXTENT_FLUSH; gen != 0 */
};

/* FILE_REQ: bytes [offset, offset + len) of one extent file. */
struct proto_file_req {
  uint64_t job_id;
  uint32_t eid;
  uint8_t file; /* enum proto_file */
  uint64_t offset;
  uint32_t len; /* 1..PROTO_MAX_JOB_BYTES */
};

/* FILE_DATA: n bytes at offset of a file of file_size bytes (n may be
 * short at the end of the file; n == 0 when err != 0). */
struct proto_file_data {
  uint64_t job_id;
  int32_t err;
  uint32_t n;
  uint64_t file_size, offset;
  const uint8_t *data;
};

struct proto_msg {
  uint16_t type;
  uint16_t flags;
  union {
    struct proto_hello hello;
    struct proto_hello_ok hello_ok;
    struct proto_error error;
    struct {
      uint32_t count;
      const uint8_t *states; /* count * PROTO_EXTENT_STATE_LEN bytes */
    } extent_states;
    struct proto_activate activate;
    uint64_t gen;       /* ACTIVATE_OK, NO_LONGER_ACTIVE */
    struct proto_io io; /* WRITE, READ, TRIM, EXTENT_MAP_REQ */
    struct proto_flush flush;
    struct proto_job_done job_done;
    struct proto_read_done read_done;
    uint64_t ping;              /* PING, PONG */
    struct proto_extent_op ext; /* EXTENT_FLUSH, EXTENT_MARK, EXTEND
                                   (eid: the new extent count) */
    struct proto_file_req file_req;
    struct proto_file_data file_data;
    struct proto_extent_map map;
    uint8_t auth_mac[32]; /* AUTH, AUTH_OK */
    struct proto_status status;
    struct proto_snapshot snap;
    struct proto_snapshots snaps;
  } u;
};

/* The most blocks one job of this type (WRITE, READ, TRIM, EXTENT_MAP_REQ) may name at
 * this block size: the single rule the encoder's callers (the upstairs'
 * splitter) and every decoder apply. */
static inline uint32_t proto_max_job_blocks(uint16_t type, uint32_t block_size)
{
  uint32_t n;

  if (type == PROTO_T_TRIM)
    return PROTO_MAX_TRIM_BLOCKS;
  if (type == PROTO_T_EXTENT_MAP_REQ)
    return PROTO_MAX_MAP_BLOCKS;
  n = block_size ? PROTO_MAX_JOB_BYTES / block_size : PROTO_MAX_JOB_BLOCKS;
  return n < PROTO_MAX_JOB_BLOCKS ? n : PROTO_MAX_JOB_BLOCKS;
}

/* Length of the frame starting at buf, from its first 4 bytes.
 * Returns 0 if fewer than 4 bytes are available, the length if it lies in
 * [PROTO_FRAME_HDR_LEN, PROTO_MAX_FRAME], else -EPROTO. */
int64_t proto_frame_len(const uint8_t *buf, size_t avail);

/* Strictly decode one whole frame of exactly len bytes.  block_size is the
 * negotiated block size, needed to size WRITE and READ_DONE bulk data; 0
 * before HELLO_OK, which makes those frames invalid.  Returns 0 or
 * -EPROTO (malformed), -EMSGSIZE (too large), -ENOTSUP (unknown type).
 * The result points into buf. */
int proto_decode(const uint8_t *buf, size_t len, uint32_t block_size,
                 struct proto_msg *msg);

/* Human-readable name of a frame type ("WRITE"), or "?" */
const char *proto_type_name(unsigned type);

/* Encoders: write a whole frame (or, for bulk frames, its fixed header
 * with `length` already covering the bulk) into buf, which must hold the
 * fixed length; return the number of bytes written. */
size_t proto_put_hello(uint8_t *buf, const struct proto_hello *h);
size_t proto_put_hello_ok(uint8_t *buf, const struct proto_hello_ok *h);
/* text is truncated to PROTO_MAX_MSG; buf must hold
 * PROTO_ERROR_HDR_LEN + PROTO_MAX_MSG bytes. */
size_t proto_put_error(uint8_t *buf, int32_t err, uint64_t job_id,
                       const char *text);
size_t proto_put_extent_states_req(uint8_t *buf);
/* Fixed header only; follow with count calls to proto_extent_state_put. */
size_t proto_put_extent_states_hdr(uint8_t *buf, uint32_t count);
size_t proto_put_activate(uint8_t *buf, const struct proto_activate *a);
size_t proto_put_activate_ok(uint8_t *buf, uint64_t gen);
size_t proto_put_no_longer_active(uint8_t *buf, uint64_t gen);
/* WRITE header; the frame continues with n contexts (proto_ctx_put) and
 * n * block_size bytes of data. */
size_t proto_put_write_hdr(uint8_t *buf, uint64_t job_id, uint64_t lba,
                           uint32_t n, uint32_t block_size);
/* flags: 0 or PROTO_F_CTX_ONLY. */
size_t proto_put_read(uint8_t *buf, uint64_t job_id, uint64_t lba, uint32_t n,
                      uint16_t flags);
size_t proto_put_trim(uint8_t *buf, uint64_t job_id, uint64_t lba, uint32_t n,
                      uint64_t version);
size_t proto_put_flush(uint8_t *buf, const struct proto_flush *f);
size_t proto_put_job_done(uint8_t *buf, uint64_t job_id, int32_t err);
/* READ_DONE header; continues with n contexts and n * block_size bytes
 * (none with flags PROTO_F_CTX_ONLY; n must be 0 when err != 0). */
size_t proto_put_read_done_hdr(uint8_t *buf, uint64_t job_id, int32_t err,
                               uint32_t n, uint32_t block_size, uint16_t flags);
size_t proto_put_ping(uint8_t *buf, uint16_t type /* PING or PONG */,
                      uint64_t v);

/* Extent frames: type is EXTENT_FLUSH (job_id, eid, flush_no, gen) or
 * EXTENT_MARK (job_id, eid); the other fields are not sent.  buf must
 * hold PROTO_EXTENT_FLUSH_LEN. */
size_t proto_put_extent_op(uint8_t *buf, uint16_t type,
                           const struct proto_extent_op *o);
size_t proto_put_file_req(uint8_t *buf, const struct proto_file_req *r);
/* FILE_DATA header; the frame continues with n bytes. */
size_t proto_put_file_data_hdr(uint8_t *buf, const struct proto_file_data *d);

/* EXTENT_MAP_REQ of blocks [lba, lba + n). */
size_t proto_put_extent_map_req(uint8_t *buf, uint64_t job_id, uint64_t lba,
                                uint32_t n);
/* EXTENT_MAP header; the frame continues with (n + 7) / 8 bitmap bytes
 * (none when err != 0, and then n must be 0). */
size_t proto_put_extent_map_hdr(uint8_t *buf, uint64_t job_id, int32_t err,
                                uint32_t n);
static inline size_t proto_map_bytes(uint32_t n)
{
  return ((size_t) n + 7) / 8;
}

/* AUTH or AUTH_OK (type) carrying a 32-byte HMAC. */
size_t proto_put_auth(uint8_t *buf, uint16_t type, const uint8_t mac[32]);
size_t proto_put_status_req(uint8_t *buf);
/* active_peer is truncated to PROTO_STATUS_PEER_LEN - 1 bytes. */
size_t proto_put_status(uint8_t *buf, const struct proto_status *s);

/* Block contexts and extent states in bulk areas. */
void proto_ctx_put(uint8_t *p, const struct proto_ctx *c);
void proto_ctx_get(const uint8_t *p, struct proto_ctx *c);
void proto_extent_state_put(uint8_t *p, const struct proto_extent_state *s);
void proto_extent_state_get(const uint8_t *p, struct proto_extent_state *s);

/* Little-endian helpers (also used by region and crypto code). */
static inline void proto_le16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t) v;
  p[1] = (uint8_t) (v >> 8);
}
static inline void proto_le32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t) (v >> (8 * i));
}
static inline void proto_le64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t) (v >> (8 * i));
}
static inline uint16_t proto_rd16(const uint8_t *p)
{
  return (uint16_t) (p[0] | (p[1] << 8));
}
static inline uint32_t proto_rd32(const uint8_t *p)
{
  return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) |
         ((uint32_t) p[3] << 24);
}
static inline uint64_t proto_rd64(const uint8_t *p)
{
  return (uint64_t) proto_rd32(p) | ((uint64_t) proto_rd32(p + 4) << 32);
}

/* SNAPSHOT (a valid op; create with a name and gen != 0). */
size_t proto_put_snapshot(uint8_t *buf, const struct proto_snapshot *s);
/* SNAPSHOTS header; the frame continues with n entries. */
size_t proto_put_snapshots_hdr(uint8_t *buf, uint64_t job_id, int32_t err,
                               uint32_t n);
void proto_snap_entry_put(uint8_t *p, const struct proto_snap_entry *e);
/* Decodes one entry of a SNAPSHOTS frame proto_decode accepted. */
void proto_snap_entry_get(const uint8_t *p, struct proto_snap_entry *e);

#endif
