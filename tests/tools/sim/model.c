/* crucible-sim: the model of the volume (per-sector write ids) and L, the
 * writes not yet durable. */
#include "sim.h"

/* ---- content and model ------------------------------------------------ */

uint64_t mix64(uint64_t z)
{
  z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull;
  z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ull;
  return z ^ (z >> 33);
}

/* The bytes write WID puts at volume offset OFF..OFF+LEN (0: zeroes).
 * Each aligned 8-byte word is a hash of (wid, word index): unique per
 * write and position for volumes below 32 GiB. */
void content(uint32_t wid, uint64_t off, uint64_t len, uint8_t *buf)
{
  if (wid == 0) {
    memset(buf, 0, len);
    return;
  }
  uint64_t o = off, end = off + len;
  while (o < end) {
    uint64_t w = mix64(((uint64_t) wid << 32 | (o >> 3)) ^ 0x5bd1e995ull);
    for (unsigned b = o & 7; b < 8 && o < end; b++, o++)
      *buf++ = (uint8_t) (w >> (8 * b));
  }
}

void model_grow(struct model *m, uint64_t size)
{
  uint32_t n = size / SECTOR;
  uint32_t *sec = realloc(m->sec, (size_t) n * sizeof *sec);
  if (!sec)
    exit(1);
  memset(sec + m->nsec, 0, (size_t) (n - m->nsec) * sizeof *sec);
  m->sec = sec;
  m->nsec = n;
}

void model_init(struct model *m, uint64_t size)
{
  memset(m, 0, sizeof *m);
  m->nsec = size / SECTOR;
  m->sec = calloc(m->nsec, sizeof *m->sec);
  if (!m->sec)
    exit(1);
}

void model_free(struct model *m)
{
  free(m->sec);
  free(m->mix);
  free(m->freel);
  memset(m, 0, sizeof *m);
}

/* dst = a deep copy of src (dst freed first). */
void model_copy(struct model *dst, const struct model *src)
{
  model_free(dst);
  *dst = *src;
  dst->sec = xmalloc(src->nsec * sizeof *src->sec);
  memcpy(dst->sec, src->sec, src->nsec * sizeof *src->sec);
  dst->mix = xmalloc(src->capmix * sizeof *src->mix);
  memcpy(dst->mix, src->mix, src->nmix * sizeof *src->mix);
  dst->freel = xmalloc(src->capmix * sizeof *src->freel);
  memcpy(dst->freel, src->freel, src->nfree * sizeof *src->freel);
}

/* A split-sector slot filled with id FILL; the caller stores MIXED|index. */
uint32_t mix_alloc(struct model *m, uint32_t fill)
{
  uint32_t i;
  if (m->nfree) {
    i = m->freel[--m->nfree];
  } else {
    if (m->nmix == m->capmix) {
      m->capmix = m->capmix ? 2 * m->capmix : 256;
      m->mix = realloc(m->mix, m->capmix * sizeof *m->mix);
      m->freel = realloc(m->freel, m->capmix * sizeof *m->freel);
      if (!m->mix || !m->freel)
        exit(1);
    }
    i = m->nmix++;
  }
  for (int b = 0; b < SECTOR; b++)
    m->mix[i][b] = fill;
  return i;
}

/* Write id WID over bytes [lo, hi) of sector s (a part of it). */
void sector_apply_part(struct model *m, uint32_t s, unsigned lo, unsigned hi,
                       uint32_t wid)
{
  uint32_t v = m->sec[s];
  if (!(v & MIXED)) {
    if (v == wid)
      return;
    v = MIXED | mix_alloc(m, v);
    m->sec[s] = v;
  }
  uint32_t *p = m->mix[v & ~MIXED];
  for (unsigned b = lo; b < hi; b++)
    p[b] = wid;
  for (unsigned b = 1; b < SECTOR; b++)
    if (p[b] != p[0])
      return;
  m->sec[s] = p[0]; /* uniform again: collapse */
  m->freel[m->nfree++] = v & ~MIXED;
}

/* Bytes [off, off+len) now hold write WID. */
void model_apply(struct model *m, uint64_t off, uint64_t len, uint32_t wid)
{
  uint64_t end = off + len;
  while (off < end) {
    uint32_t s = off / SECTOR;
    uint64_t so = (uint64_t) s * SECTOR, n = min64(end, so + SECTOR) - off;
    if (n == SECTOR) {
      if (m->sec[s] & MIXED)
        m->freel[m->nfree++] = m->sec[s] & ~MIXED;
      m->sec[s] = wid;
    } else {
      sector_apply_part(m, s, off - so, off - so + n, wid);
    }
    off += n;
  }
}

uint32_t model_wid_at(const struct model *m, uint64_t o)
{
  uint32_t v = m->sec[o / SECTOR];
  return v & MIXED ? m->mix[v & ~MIXED][o % SECTOR] : v;
}

/* buf = what the model says bytes [off, off+len) hold. */
void model_expect(const struct model *m, uint64_t off, uint64_t len,
                  uint8_t *buf)
{
  uint64_t end = off + len;
  while (off < end) {
    uint32_t wid = model_wid_at(m, off);
    uint64_t run = 1;
    if (!(m->sec[off / SECTOR] & MIXED)) {
      run = min64(end, (off / SECTOR + 1) * SECTOR) - off;
    } else {
      while (off + run < end && (off + run) % SECTOR &&
             model_wid_at(m, off + run) == wid)
        run++;
    }
    content(wid, off, run, buf);
    buf += run;
    off += run;
  }
}

/* True if 4 KiB block b is entirely written (no zero id) in m. */
bool model_block_written(const struct model *m, uint64_t b)
{
  for (uint32_t s = b * (BLOCK / SECTOR); s < (b + 1) * (BLOCK / SECTOR); s++)
    if (m->sec[s] == 0 || (m->sec[s] & MIXED))
      return false;
  return true;
}

/* ---- L: writes not yet durable ---------------------------------------- */

void ulog_push(struct ulog *l, uint64_t off, uint64_t len, uint32_t wid,
               bool durable, bool inflight)
{
  if (l->n == l->cap) {
    if (l->head > l->n / 2) {
      memmove(l->e, l->e + l->head, (l->n - l->head) * sizeof *l->e);
      l->n -= l->head;
      l->head = 0;
    } else {
      l->cap = l->cap ? 2 * l->cap : 1024;
      l->e = realloc(l->e, l->cap * sizeof *l->e);
      if (!l->e)
        exit(1);
    }
  }
  l->e[l->n++] = (struct uentry){off, len, wid, durable, inflight};
}

uint64_t ulog_end(const struct ulog *l)
{
  return l->base + (l->n - l->head);
}

/* Fold the durable prefix of L into D. */
void ulog_settle(struct ulog *l, struct model *D)
{
  while (l->head < l->n && l->e[l->head].durable) {
    struct uentry *e = &l->e[l->head++];
    model_apply(D, e->off, e->len, e->wid);
    l->base++;
  }
}

/* A flush issued when L ended at MARK completed: those entries are durable. */
void ulog_flushed(struct ulog *l, struct model *D, uint64_t mark)
{
  for (uint64_t a = l->base; a < mark && a < ulog_end(l); a++)
    l->e[l->head + (a - l->base)].durable = true;
  ulog_settle(l, D);
}

void ulog_clear(struct ulog *l)
{
  l->base = ulog_end(l);
  l->head = l->n = 0;
}
