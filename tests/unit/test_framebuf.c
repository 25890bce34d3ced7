/* Unit test for common/framebuf.c, against a model: a random stream of
 * frames (random lengths, each filled with bytes its sequence number
 * determines) is fed in random chunk sizes into the space the framebuf
 * offers; whole frames are consumed or, at random, handed off.  Checked:
 *   every frame comes out whole, intact and in order, and a handed-off
 *   frame is still intact after later reads;
 *   the space offered is never empty and, for a frame of at least
 *   stop_min bytes, never reaches past that frame's end;
 *   the buffer never grows past what the frames need;
 *   a length over the caller's max, or below the header, is refused
 *   when its length field arrives, and never sizes the buffer.
 * Seeded (argument 1): a failure replays.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/framebuf.h"
#include "../../common/proto.h"
#include "test.h"

#define NFRAMES 3000
#define MAXLEN (300 * 1024)

static unsigned rnd(unsigned n)
{
  return (unsigned) (random() % n);
}

/* Byte i of frame k (after its 8-byte header). */
static uint8_t fbyte(unsigned k, size_t i)
{
  return (uint8_t) (k * 131u + i * 7u + (i >> 9));
}

/* Write frame k of length len into out. */
static void make_frame(unsigned k, size_t len, uint8_t *out)
{
  proto_le32(out, (uint32_t) len);
  proto_le32(out + 4, (uint16_t) k);
  for (size_t i = PROTO_FRAME_HDR_LEN; i < len; i++)
    out[i] = fbyte(k, i);
}

/* Is f frame k of length len, byte for byte? */
static bool frame_ok(unsigned k, const uint8_t *f, size_t len)
{
  if (proto_rd32(f) != len || proto_rd16(f + 4) != (uint16_t) k)
    return false;
  for (size_t i = PROTO_FRAME_HDR_LEN; i < len; i++)
    if (f[i] != fbyte(k, i))
      return false;
  return true;
}

/* A random frame length: mostly small, some big. */
static size_t rand_len(void)
{
  switch (rnd(4)) {
  case 0: return PROTO_FRAME_HDR_LEN + rnd(32);
  case 1: return PROTO_FRAME_HDR_LEN + rnd(5000);
  case 2: return PROTO_FRAME_HDR_LEN + rnd(70000);
  default: return PROTO_FRAME_HDR_LEN + rnd(MAXLEN - PROTO_FRAME_HDR_LEN);
  }
}

struct taken {
  uint8_t *buf;
  const uint8_t *f;
  unsigned k;
  size_t len;
};

/* One run: the stream, then an over-max or malformed length at its end
 * (bad: 0 none, 1 over max, 2 below the header). */
static void run(size_t min_room, size_t stop_min, int bad)
{
  size_t *lens = malloc(NFRAMES * sizeof *lens);
  size_t total = 0, biggest = 0;
  for (unsigned k = 0; k < NFRAMES; k++) {
    lens[k] = rand_len();
    total += lens[k];
    if (lens[k] > biggest)
      biggest = lens[k];
  }
  uint8_t *stream = malloc(total + 16);
  size_t o = 0;
  for (unsigned k = 0; k < NFRAMES; k++, o += lens[k - 1])
    make_frame(k, lens[k], stream + o);
  size_t slen = total;
  if (bad) {
    proto_le32(stream + slen, bad == 1 ? MAXLEN + 1 : 3);
    proto_le32(stream + slen + 4, 0);
    slen += 8;
  }

  struct framebuf fb = {0};
  struct taken tk[8];
  unsigned ntk = 0, next = 0;
  size_t fed = 0;
  int err = 0;
  while (!err && (fed < slen || next < NFRAMES)) {
    uint8_t *p;
    size_t room, cap0 = fb.cap, held = fb.len;
    size_t rest = fb.want > fb.len ? fb.want - fb.len : 0;
    if (framebuf_space(&fb, min_room, stop_min, &p, &room) < 0) {
      CHECK(!"ENOMEM");
      break;
    }
    CHECK(room >= 1);
    /* Room for the frame's whole rest at once, and at least min_room
     * unless the frame's end comes first. */
    CHECK(room >= rest);
    CHECK(room >= min_room || room == rest);
    if (fb.want >= stop_min && rest)
      CHECK(room <= rest);
    /* Grown only to what is needed: the frame's rest or min_room. */
    size_t need = held + (rest > min_room ? rest : min_room);
    CHECK(fb.cap <= (cap0 > need ? cap0 : need));
    CHECK(fb.cap <= biggest + min_room + PROTO_FRAME_HDR_LEN);
    if (fed >= slen)
      break; /* nothing more to read: the model says what is missing */
    size_t n = 1 + rnd(rnd(2) ? 16 : 200000);
    if (n > room)
      n = room;
    if (n > slen - fed)
      n = slen - fed;
    memcpy(p, stream + fed, n);
    framebuf_commit(&fb, n);
    fed += n;
    for (;;) {
      const uint8_t *f;
      size_t fl;
      int r = framebuf_next(&fb, MAXLEN, &f, &fl);
      if (r < 0) {
        CHECK(next == NFRAMES && bad);
        CHECK(r == (bad == 1 ? -EMSGSIZE : -EPROTO));
        CHECK(fl == (bad == 1 ? MAXLEN + 1u : 3u));
        err = r;
        break;
      }
      if (r == 0)
        break;
      CHECK(next < NFRAMES);
      if (next >= NFRAMES)
        break;
      CHECK(fl == lens[next] && frame_ok(next, f, fl));
      if (rnd(4) == 0 && ntk < 8) {
        uint8_t *b = framebuf_take(&fb, rnd(2) ? fl : 1 + rnd(70000));
        CHECK(b != NULL);
        tk[ntk++] = (struct taken){b, f, next, fl};
        CHECK(fb.cur == 0);
      }
      framebuf_consume(&fb); /* a no-op after a take */
      next++;
    }
    /* Handed-off frames stay intact while reading goes on. */
    if (ntk && (ntk == 8 || rnd(3) == 0)) {
      unsigned i = rnd(ntk);
      CHECK(frame_ok(tk[i].k, tk[i].f, tk[i].len));
      free(tk[i].buf);
      tk[i] = tk[--ntk];
    }
  }
  CHECK(next == NFRAMES);
  CHECK(bad ? err != 0 : err == 0);
  if (err) {
    /* The refused length never sizes the buffer. */
    uint8_t *p;
    size_t room, cap0 = fb.cap;
    CHECK(framebuf_space(&fb, min_room, stop_min, &p, &room) == 0);
    CHECK(fb.cap <= (cap0 > fb.len + min_room ? cap0 : fb.len + min_room));
  }
  while (ntk--) {
    CHECK(frame_ok(tk[ntk].k, tk[ntk].f, tk[ntk].len));
    free(tk[ntk].buf);
  }
  framebuf_free(&fb);
  free(stream);
  free(lens);
}

int main(int argc, char **argv)
{
  unsigned seed = argc > 1 ? (unsigned) atoi(argv[1]) : 1;
  printf("seed %u\n", seed);
  srandom(seed);
  /* The downstairs' and the upstairs' parameters, then random ones. */
  run(32 * 1024, 64 * 1024, 0);
  run(1, 64 * 1024, 0);
  run(64 * 1024, FRAMEBUF_NO_STOP, 1);
  run(1, 64 * 1024, 2);
  for (int i = 0; i < 6 && !test_failures; i++)
    run(1 + rnd(100000), rnd(2) ? FRAMEBUF_NO_STOP : rnd(MAXLEN), rnd(3));
  /* No current frame: nothing to take. */
  struct framebuf fb = {0};
  CHECK(framebuf_take(&fb, 16) == NULL);
  framebuf_free(&fb);
  return test_done("test_framebuf");
}
