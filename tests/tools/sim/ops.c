/* crucible-sim: NBD connections, the op engine (range lock, checks against the
 * model) and the random op stream. */
#include "sim.h"

/* ---- NBD connections and the op engine ------------------------------- */

int on_done(void *ud, int *error)
{
  struct op *o = ud;
  o->done = true;
  o->err = *error;
  return 1; /* retire the command */
}

void conns_close(struct sim *s)
{
  for (int c = 0; c < NCONN; c++) {
    if (s->h[c])
      nbd_close(s->h[c]);
    s->h[c] = NULL;
  }
}

/* Connect connection c to nbdkit, retrying until it answers (bounded). */
void conn_open(struct sim *s, int c)
{
  double end = now() + START_SECS;
  for (;;) {
    struct nbd_handle *h = nbd_create();
    if (!h)
      fail(s, "nbd_create: %s", nbd_get_error());
    /* Unaligned requests must reach the plugin (its minimum is 512). */
    nbd_set_strict_mode(h, nbd_get_strict_mode(h) & ~LIBNBD_STRICT_ALIGN);
    if (nbd_connect_unix(h, s->sock) == 0) {
      int64_t sz = nbd_get_size(h);
      if (s->size_alt && sz == (int64_t) s->size_alt && sz != (int64_t) s->size)
        sim_grow(s, s->size_alt); /* the extend committed before the crash */
      if (sz != (int64_t) s->size)
        fail(s, "export size %" PRId64 ", want %" PRIu64, sz, s->size);
      s->h[c] = h;
      return;
    }
    nbd_close(h);
    if (s->nbdkit.pid <= 0 ||
        waitpid(s->nbdkit.pid, NULL, WNOHANG) == s->nbdkit.pid) {
      s->nbdkit.pid = 0;
      fail(s, "nbdkit exited at start");
    }
    if (now() > end)
      fail(s, "nbdkit not answering after %d s", START_SECS);
    usleep(50000);
  }
}

/* Start nbdkit on the three downstairs (verify=all if asked), connect. */
void nbdkit_start(struct sim *s, bool verify_all)
{
  char ds[3][64], key[600], stats[600], tmo[32], pidf[600], adm[600];
  unlink(s->sock);
  unlink(s->stats);
  for (int i = 0; i < 3; i++)
    snprintf(ds[i], sizeof ds[i], "downstairs=127.0.0.1:%d", s->port[i]);
  snprintf(key, sizeof key, "key=+%s", s->key);
  snprintf(stats, sizeof stats, "stats=%s", s->stats);
  snprintf(tmo, sizeof tmo, "timeout=%u", s->o.timeout);
  snprintf(pidf, sizeof pidf, "%s/nbdkit.pid", s->o.dir);
  snprintf(adm, sizeof adm, "admin=%s", s->asock);
  char *argv[] = {"nbdkit",
                  "-f",
                  "-U",
                  s->sock,
                  "--pidfile",
                  pidf,
                  (char *) s->o.plugin,
                  ds[0],
                  ds[1],
                  ds[2],
                  key,
                  stats,
                  tmo,
                  adm,
                  verify_all ? "verify=all" : NULL,
                  NULL};
  s->nbdkit.pid = spawn(s, argv, s->nblog);
  event(s, "nbdkit started pid %d%s", s->nbdkit.pid,
        verify_all ? " verify=all" : "");
  for (int c = 0; c < NCONN; c++)
    conn_open(s, c);
}

/* Submit o on its connection; returns the libnbd cookie or -1. */
int64_t submit(struct sim *s, struct op *o)
{
  struct nbd_handle *h = s->h[o->conn];
  nbd_completion_callback cb = {.callback = on_done, .user_data = o};
  uint32_t fl = o->fua ? LIBNBD_CMD_FLAG_FUA : 0;
  switch (o->k) {
  case K_READ: return nbd_aio_pread(h, o->buf, o->len, o->off, cb, 0);
  case K_WRITE: return nbd_aio_pwrite(h, o->buf, o->len, o->off, cb, fl);
  case K_TRIM: return nbd_aio_trim(h, o->len, o->off, cb, fl);
  case K_ZERO: return nbd_aio_zero(h, o->len, o->off, cb, fl);
  case K_FLUSH: return nbd_aio_flush(h, cb, 0);
  }
  return -1;
}

/* Describe the candidates for a wrong byte: D and the entries of L. */
void explain_byte(struct sim *s, uint64_t o, uint8_t got)
{
  uint8_t b;
  uint32_t w = model_wid_at(&s->M, o);
  content(w, o, 1, &b);
  fprintf(stderr, "  byte %" PRIu64 ": got 0x%02x, model wid %u = 0x%02x\n", o,
          got, w, b);
  w = model_wid_at(&s->D, o);
  content(w, o, 1, &b);
  fprintf(stderr, "  durable model wid %u = 0x%02x\n", w, b);
  for (size_t i = s->L.head; i < s->L.n; i++) {
    struct uentry *e = &s->L.e[i];
    if (o < e->off || o >= e->off + e->len)
      continue;
    content(e->wid, o, 1, &b);
    fprintf(stderr,
            "  unflushed wid %u off %" PRIu64 " len %" PRIu64 "%s = 0x%02x\n",
            e->wid, e->off, e->len, e->durable ? " durable" : "", b);
  }
}

/* Check a completed read against M. */
void check_read(struct sim *s, struct op *o)
{
  uint8_t *want = xmalloc(o->len);
  model_expect(&s->M, o->off, o->len, want);
  if (memcmp(want, o->buf, o->len) == 0) {
    free(want);
    return;
  }
  uint64_t first = 0, last = 0, nbad = 0;
  for (uint64_t i = 0; i < o->len; i++) {
    if (want[i] == o->buf[i])
      continue;
    if (!nbad++)
      first = i;
    last = i;
  }
  explain_byte(s, o->off + first, o->buf[first]);
  fail(s,
       "MISMATCH: read op %" PRIu64 " c%u off %" PRIu64 " len %" PRIu64
       ": %" PRIu64 " bytes differ from the model in [%" PRIu64 ", %" PRIu64
       "] (volume offsets; first in block %" PRIu64 ", wid there %u)",
       o->seq, o->conn, o->off, o->len, nbad, o->off + first, o->off + last,
       (o->off + first) / BLOCK, model_wid_at(&s->M, o->off + first));
}

/* Apply an acknowledged op to the model. */
void acked(struct sim *s, struct op *o)
{
  if (o->k == K_READ) {
    check_read(s, o);
  } else if (o->k == K_FLUSH) {
    ulog_flushed(&s->L, &s->D, o->mark);
  } else {
    uint32_t wid = o->k == K_WRITE ? o->wid : 0;
    if (o->inject) {
      wid = ++s->next_wid; /* the deliberate wrong expectation */
      event(s, "INJECT: op %" PRIu64 " recorded as wid %u", o->seq, wid);
    }
    model_apply(&s->M, o->off, o->len, wid);
    ulog_push(&s->L, o->off, o->len, wid, o->fua, false);
    ulog_settle(&s->L, &s->D);
  }
  s->nops[o->k]++;
  s->bytes[o->k] += o->len;
}

/* Retire a completed op (acked, or failed: a failure only during a crash). */
void retire(struct sim *s, struct op *o)
{
  if (o->err == 0) {
    acked(s, o);
  } else if (s->crashing) {
    if (o->k == K_WRITE || o->k == K_TRIM || o->k == K_ZERO)
      ulog_push(&s->L, o->off, o->len, o->k == K_WRITE ? o->wid : 0, false,
                true);
  } else {
    fail(s, "%s op %" PRIu64 " c%u off %" PRIu64 " len %" PRIu64 " failed: %s",
         kind_name[o->k], o->seq, o->conn, o->off, o->len, strerror(o->err));
  }
  free(o->buf);
  s->busy[o->conn]--;
  memset(o, 0, sizeof *o);
}

unsigned inflight(const struct sim *s)
{
  unsigned n = 0;
  for (int i = 0; i < MAX_INFLIGHT; i++)
    n += s->slot[i].used;
  return n;
}

/* Poll the connections up to ms milliseconds, retire completed ops, and
 * fail on an op in flight longer than its bound. */
void pump(struct sim *s, int ms)
{
  struct pollfd pfd[NCONN];
  int map[NCONN], n = 0;
  for (int c = 0; c < NCONN; c++) {
    if (!s->h[c] || nbd_aio_is_dead(s->h[c]) || nbd_aio_get_fd(s->h[c]) < 0)
      continue;
    unsigned dir = nbd_aio_get_direction(s->h[c]);
    pfd[n] = (struct pollfd){.fd = nbd_aio_get_fd(s->h[c])};
    pfd[n].events = (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
                    (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0);
    map[n++] = c;
  }
  if (poll(pfd, n, ms) < 0 && errno != EINTR)
    fail(s, "poll: %s", strerror(errno));
  for (int i = 0; i < n; i++) {
    struct nbd_handle *h = s->h[map[i]];
    int r = 0;
    if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
      r = nbd_aio_notify_read(h);
    if (r == 0 && (pfd[i].revents & POLLOUT))
      r = nbd_aio_notify_write(h);
    if (r < 0 && !s->crashing)
      fail(s, "connection c%d died: %s", map[i], nbd_get_error());
  }
  double limit = now() - (4.0 * s->o.timeout + 60);
  for (int i = 0; i < MAX_INFLIGHT; i++) {
    struct op *o = &s->slot[i];
    if (o->used && o->done)
      retire(s, o);
    else if (o->used && !s->crashing && o->t0 < limit)
      fail(s,
           "%s op %" PRIu64 " c%u off %" PRIu64 " len %" PRIu64
           " hung for %.0f s",
           kind_name[o->k], o->seq, o->conn, o->off, o->len, now() - o->t0);
  }
}

/* Wait (bounded by the per-op bound in pump) until nothing is in flight. */
void drain(struct sim *s)
{
  while (inflight(s))
    pump(s, 100);
}

bool overlaps(const struct sim *s, uint64_t off, uint64_t len)
{
  for (int i = 0; i < MAX_INFLIGHT; i++) {
    const struct op *o = &s->slot[i];
    if (o->used && o->k != K_FLUSH && o->off < off + len &&
        off < o->off + o->len)
      return true;
  }
  return false;
}

/* Issue op *t: wait for a slot on its connection and for the range lock,
 * fill the write buffer, submit. */
void issue(struct sim *s, const struct op *t)
{
  while (s->busy[t->conn] >= PER_CONN ||
         (t->k != K_FLUSH && overlaps(s, t->off, t->len)))
    pump(s, 100);
  struct op *o = NULL;
  for (int i = 0; i < MAX_INFLIGHT && !o; i++)
    if (!s->slot[i].used)
      o = &s->slot[i];
  *o = *t;
  o->used = true;
  o->t0 = now();
  if (o->k == K_READ || o->k == K_WRITE)
    o->buf = xmalloc(o->len);
  if (o->k == K_WRITE)
    content(o->wid, o->off, o->len, o->buf);
  if (o->k == K_FLUSH)
    o->mark = ulog_end(&s->L);
  if (o->k != K_READ && o->k != K_FLUSH) {
    for (uint64_t b = o->off / BLOCK; b <= (o->off + o->len - 1) / BLOCK; b++)
      s->blk_mod[b] = o->seq;
    heal_flips(s, o->off, o->len);
    heal_stale(s, o->off, o->len);
  }
  s->busy[o->conn]++;
  if (submit(s, o) < 0)
    fail(s, "submit %s op %" PRIu64 ": %s", kind_name[o->k], o->seq,
         nbd_get_error());
}

/* ---- the random op stream --------------------------------------------- */

/* A random length: mostly small, sometimes up to max. */
uint64_t gen_len(struct rng *r, uint64_t max)
{
  uint64_t c = rng_range(r, 0, 99), len;
  if (c < 35)
    len = rng_range(r, 1, 4096);
  else if (c < 70)
    len = rng_range(r, 4096, 256 << 10);
  else if (c < 90)
    len = rng_range(r, 256 << 10, 4 << 20);
  else if (c < 98)
    len = rng_range(r, 4 << 20, 16 << 20);
  else
    len = rng_range(r, 16 << 20, MAX_IO);
  return min64(len, max);
}

/* A random range of at most max bytes: aligned to 4096, 512 or nothing,
 * a quarter of them across an extent boundary. */
void gen_range(struct sim *s, uint64_t max, uint64_t *off, uint64_t *len)
{
  struct rng *r = &s->rops;
  uint64_t a = rng_range(r, 0, 99), align = a < 45   ? BLOCK
                                            : a < 65 ? SECTOR
                                                     : 1;
  uint64_t n = gen_len(r, max), o;
  n = max64(align, (n + align - 1) / align * align);
  if (s->o.extent_count > 1 && rng_range(r, 0, 3) == 0) {
    uint64_t b = s->extent_bytes * rng_range(r, 1, s->o.extent_count - 1);
    o = n > 1 ? b - rng_range(r, 1, n - 1) : b - 1;
  } else {
    o = rng_range(r, 0, s->size - n);
  }
  o = o / align * align;
  if (o + n > s->size)
    o = s->size - n;
  *off = o;
  *len = n;
}

/* The next op of the stream (deterministic in the seed). */
void gen_op(struct sim *s, struct op *o)
{
  struct rng *r = &s->rops;
  uint64_t c = rng_range(r, 0, 99);
  memset(o, 0, sizeof *o);
  o->seq = s->seq;
  o->conn = rng_range(r, 0, NCONN - 1);
  o->k = c < 37   ? K_READ
         : c < 74 ? K_WRITE
         : c < 84 ? K_TRIM
         : c < 94 ? K_ZERO
                  : K_FLUSH;
  if (o->k == K_FLUSH && s->no_flush)
    o->k = K_WRITE; /* a down-crash outage without flushes */
  if (o->k == K_FLUSH)
    return;
  if ((o->k == K_TRIM || o->k == K_ZERO) && rng_range(r, 0, 19) == 0) {
    o->len = rng_range(r, MAX_IO, s->size); /* up to the whole volume */
    o->off = rng_range(r, 0, s->size - o->len);
  } else {
    gen_range(s, MAX_IO, &o->off, &o->len);
  }
  if (o->k != K_READ)
    o->fua = rng_range(r, 0, 99) < 8 && !s->no_flush;
  if (o->k == K_WRITE)
    o->wid = ++s->next_wid;
}

void log_op(struct sim *s, const struct op *o)
{
  if (o->k == K_FLUSH)
    event(s, "op %" PRIu64 " flush c%u (covers L < %" PRIu64 ")", o->seq,
          o->conn, ulog_end(&s->L));
  else
    event(s, "op %" PRIu64 " %s c%u off %" PRIu64 " len %" PRIu64 " wid %u%s",
          o->seq, kind_name[o->k], o->conn, o->off, o->len, o->wid,
          o->fua ? " fua" : "");
}

/* Issue a read of [off, off+len) on connection c outside the stream. */
void issue_read(struct sim *s, unsigned c, uint64_t off, uint64_t len)
{
  struct op o = {.k = K_READ, .conn = c, .seq = s->seq, .off = off, .len = len};
  issue(s, &o);
}

/* Flush on connection 0 and wait for everything. */
void flush_all(struct sim *s)
{
  struct op o = {.k = K_FLUSH, .seq = s->seq};
  drain(s);
  issue(s, &o);
  drain(s);
}
