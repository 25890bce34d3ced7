/* crucible-c: a receive buffer of length-prefixed frames (framebuf.h). */
#include "framebuf.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

void framebuf_free(struct framebuf *fb)
{
  free(fb->buf);
  memset(fb, 0, sizeof *fb);
}

int framebuf_space(struct framebuf *fb, size_t min_room, size_t stop_min,
                   uint8_t **p, size_t *n)
{
  size_t rest = fb->want > fb->len ? fb->want - fb->len : 0;
  size_t need = min_room > rest ? min_room : rest;
  if (need == 0)
    need = 1;
  if (fb->off && fb->cap - fb->off - fb->len < need) {
    memmove(fb->buf, fb->buf + fb->off, fb->len);
    fb->off = 0;
  }
  if (fb->cap - fb->off - fb->len < need) {
    uint8_t *b = realloc(fb->buf, fb->off + fb->len + need);
    if (!b) {
      *p = NULL;
      *n = 0;
      return -ENOMEM;
    }
    fb->buf = b;
    fb->cap = fb->off + fb->len + need;
  }
  size_t room = fb->cap - fb->off - fb->len;
  if (fb->want >= stop_min && rest && rest < room)
    room = rest;
  *p = fb->buf + fb->off + fb->len;
  *n = room;
  return 0;
}

void framebuf_commit(struct framebuf *fb, size_t n)
{
  assert(n <= fb->cap - fb->off - fb->len);
  fb->len += n;
}

int framebuf_next(struct framebuf *fb, size_t max, const uint8_t **frame,
                  size_t *len)
{
  assert(fb->cur == 0);
  fb->want = 0;
  if (fb->len < 4)
    return 0;
  const uint8_t *f = fb->buf + fb->off;
  int64_t fl = proto_frame_len(f, fb->len);
  if (fl < 0 || (size_t) fl > max) {
    *len = proto_rd32(f);
    return fl < 0 ? -EPROTO : -EMSGSIZE;
  }
  fb->want = (size_t) fl;
  if (fb->len < fb->want)
    return 0;
  fb->cur = fb->want;
  *frame = f;
  *len = fb->cur;
  return 1;
}

void framebuf_consume(struct framebuf *fb)
{
  fb->off += fb->cur;
  fb->len -= fb->cur;
  fb->cur = 0;
  fb->want = 0;
  if (fb->len == 0)
    fb->off = 0;
}

uint8_t *framebuf_take(struct framebuf *fb, size_t ncap)
{
  if (!fb->cur)
    return NULL;
  size_t tail = fb->len - fb->cur;
  size_t cap = tail > ncap ? tail : ncap;
  uint8_t *nb = malloc(cap ? cap : 1);
  if (!nb)
    return NULL;
  /* Rare for big frames: framebuf_space's stop_min ends their reads. */
  memcpy(nb, fb->buf + fb->off + fb->cur, tail);
  uint8_t *f = fb->buf;
  fb->buf = nb;
  fb->cap = cap ? cap : 1;
  fb->off = 0;
  fb->len = tail;
  fb->cur = 0;
  fb->want = 0;
  return f;
}
