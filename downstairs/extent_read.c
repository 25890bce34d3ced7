/* crucible-c downstairs: the read side of an extent (extent.h): which
 * stored context matches the bytes read (ext_read, ext_read_cached,
 * ext_verify) and what the metadata claims (ext_versions).  Reads change
 * nothing; the crash rule they rely on (I1, I2) is in extent.c. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "../common/hash.h"
#include "../common/log.h"
#include "extent.h"
#include "extent_int.h"

static void ctx_from_row(sqlite3_stmt *s, struct proto_ctx *c)
{
  memset(c, 0, sizeof *c);
  c->version = (uint64_t) sqlite3_column_int64(s, 1);
  c->hash = (uint64_t) sqlite3_column_int64(s, 2);
  if (sqlite3_column_bytes(s, 3) == PROTO_NONCE_LEN)
    memcpy(c->nonce, sqlite3_column_blob(s, 3), PROTO_NONCE_LEN);
  if (sqlite3_column_bytes(s, 4) == PROTO_TAG_LEN)
    memcpy(c->tag, sqlite3_column_blob(s, 4), PROTO_TAG_LEN);
  /* The unwritten row is the one without a nonce (written rows always
   * carry one, zero on plain regions); its version is its trim's. */
  c->flags = sqlite3_column_type(s, 3) != SQLITE_NULL ? PROTO_CTX_PRESENT : 0;
}

/* Walk the contexts of [blk, blk+n) against the bytes in data.  For each
 * block with contexts: ctxs (if not NULL) gets the matching context, or
 * the newest if none matches (flags 0 if that is the unwritten row); bad
 * (if not NULL) is called when none matches.  *nwritten counts blocks
 * with contexts. */
static int match_range(struct ext *e, uint64_t blk, uint32_t n,
                       const uint8_t *data, struct proto_ctx *ctxs,
                       void (*bad)(uint32_t, uint64_t, void *), void *arg,
                       uint64_t *nwritten)
{
  sqlite3_stmt *s = e->st[ST_SELECT_RANGE];
  uint64_t cur = UINT64_MAX, disk = 0;
  bool matched = true, have = false;
  struct proto_ctx c, best = {0};
  int rc;
  sqlite3_bind_int64(s, 1, (sqlite3_int64) blk);
  sqlite3_bind_int64(s, 2, (sqlite3_int64) (blk + n));
  for (;;) {
    rc = sqlite3_step(s);
    uint64_t i = rc == SQLITE_ROW ? (uint64_t) sqlite3_column_int64(s, 0) - blk
                                  : UINT64_MAX;
    if (i != cur && cur != UINT64_MAX) { /* finish block cur */
      if (!matched && ctxs) /* a read; verify reports through bad() */
        log_warn("extent %u block %" PRIu64 ": no context matches the data",
                 e->eid, blk + cur);
      if (!matched && bad)
        bad(e->eid, blk + cur, arg);
      if (ctxs)
        ctxs[cur] = best;
      if (ctxs && !matched)
        ctxs[cur].flags |= PROTO_CTX_BAD; /* never a copy source */
    }
    if (rc != SQLITE_ROW)
      break;
    assert(i < n);
    if (i != cur) {
      cur = i;
      disk = crypt_hash_plain(data + i * e->block_size, e->block_size);
      matched = have = false;
      (*nwritten)++;
    }
    if (matched)
      continue;
    ctx_from_row(s, &c);
    if ((uint64_t) sqlite3_column_int64(s, 5) == disk)
      best = c, matched = have = true;
    else if (!have || c.version > best.version)
      best = c, have = true;
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) {
    log_error("extent %u: select: %s", e->eid, sqlite3_errmsg(e->db));
    return ext__sql_err(rc);
  }
  return 0;
}

int ext_versions(struct ext *e, uint64_t blk, uint32_t n,
                 struct proto_ctx *ctxs)
{
  sqlite3_stmt *s = e->st[ST_SELECT_RANGE];
  struct proto_ctx c;
  int rc;
  assert(n > 0 && blk + n <= e->extent_size);
  if (ext_pending(e, blk, n) && (rc = ext_settle(e)) < 0)
    return rc; /* J5 */
  memset(ctxs, 0, (size_t) n * sizeof *ctxs);
  sqlite3_bind_int64(s, 1, (sqlite3_int64) blk);
  sqlite3_bind_int64(s, 2, (sqlite3_int64) (blk + n));
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    uint64_t i = (uint64_t) sqlite3_column_int64(s, 0) - blk;
    assert(i < n);
    ctx_from_row(s, &c);
    if (c.version >= ctxs[i].version)
      ctxs[i] = c;
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) {
    log_error("extent %u: select: %s", e->eid, sqlite3_errmsg(e->db));
    return ext__sql_err(rc);
  }
  return 0;
}

static int read_blocks(struct ext *e, uint64_t blk, uint32_t n,
                       struct proto_ctx *ctxs, uint8_t *data, bool cached)
{
  size_t bs = e->block_size;
  uint64_t nw = 0;
  assert(n > 0 && blk + n <= e->extent_size);
  if (ext_pending(e, blk, n)) { /* J5: its rows are not there yet */
    if (cached)
      return -EAGAIN; /* the fold is a transaction: not on the loop */
    int s = ext_settle(e);
    if (s < 0)
      return s;
  }
  int r =
      cached
          ? ext__pread_cached(e->fd, data, (size_t) n * bs, (off_t) (blk * bs))
          : ext__pread_full(e->fd, data, (size_t) n * bs, (off_t) (blk * bs));
  if (r == -EAGAIN && cached)
    return r;
  if (r < 0) {
    log_error("extent %u: pread: %s", e->eid, log_strerror(-r));
    return r;
  }
  memset(ctxs, 0, (size_t) n * sizeof *ctxs);
  r = match_range(e, blk, n, data, ctxs, NULL, NULL, &nw);
  if (r < 0)
    return r;
  /* No context, or the unwritten row matched: unwritten, zeroes (I2 says
   * the disk holds zeroes anyway).  A BAD block keeps its bytes. */
  for (uint32_t i = 0; i < n; i++)
    if (ctxs[i].flags == 0)
      memset(data + i * bs, 0, bs);
  return 0;
}

int ext_read(struct ext *e, uint64_t blk, uint32_t n, struct proto_ctx *ctxs,
             uint8_t *data)
{
  return read_blocks(e, blk, n, ctxs, data, false);
}

int ext_read_cached(struct ext *e, uint64_t blk, uint32_t n,
                    struct proto_ctx *ctxs, uint8_t *data)
{
  return read_blocks(e, blk, n, ctxs, data, true);
}

int ext_verify(struct ext *e, void (*bad)(uint32_t, uint64_t, void *),
               void *arg, uint64_t *checked)
{
  size_t bs = e->block_size;
  uint32_t chunk = (uint32_t) ((1u << 20) / bs); /* 1 MiB per pread */
  uint8_t *buf = malloc((size_t) chunk * bs);
  int r = buf ? ext_settle(e) : -ENOMEM; /* J5 */
  for (uint64_t b = 0; r == 0 && b < e->extent_size; b += chunk) {
    uint32_t n =
        (uint32_t) (e->extent_size - b < chunk ? e->extent_size - b : chunk);
    r = ext__pread_full(e->fd, buf, (size_t) n * bs, (off_t) (b * bs));
    if (r == 0)
      r = match_range(e, b, n, buf, NULL, bad, arg, checked);
  }
  free(buf);
  return r;
}
