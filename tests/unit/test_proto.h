/* Unit tests of the wire codec (test_proto.c: the frame header, session
 * and admin frames; test_proto_job.c: the job frames): the frame table
 * each fills with one frame of every type, and the check run over it:
 * every strict prefix of every frame is rejected, and 10 000 random
 * mutations never crash the decoder (run under ASan with SANITIZE=1) and
 * never yield a frame whose bulk pointers reach outside the buffer. */
#ifndef CRUCIBLE_TEST_PROTO_H
#define CRUCIBLE_TEST_PROTO_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/proto.h"
#include "test.h"

#define BS 512
#define MAXF (PROTO_IO_HDR_LEN + 4 * (PROTO_CTX_LEN + BS))

struct frame {
  uint8_t b[MAXF];
  size_t len;
};

static struct frame frames[64];
static int nframes;

static struct frame *add(void)
{
  return &frames[nframes++];
}

static void fill(uint8_t *p, size_t n, int seed)
{
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t) (seed + i * 13);
}

/* Bulk pointers of a decoded frame must stay inside it. */
static void check_inside(const struct proto_msg *m, const uint8_t *b,
                         size_t len)
{
  const uint8_t *end = b + len;
  if (m->type == PROTO_T_WRITE) {
    CHECK(m->u.io.ctxs >= b && m->u.io.data + (size_t) m->u.io.n * BS <= end);
  } else if (m->type == PROTO_T_READ_DONE && m->u.read_done.n) {
    CHECK(m->u.read_done.ctxs >= b &&
          m->u.read_done.data + (size_t) m->u.read_done.n * BS <= end);
  } else if (m->type == PROTO_T_FILE_DATA) {
    CHECK(m->u.file_data.data >= b &&
          m->u.file_data.data + m->u.file_data.n <= end);
  } else if (m->type == PROTO_T_EXTENT_MAP && m->u.map.n) {
    CHECK(m->u.map.bits >= b &&
          m->u.map.bits + proto_map_bytes(m->u.map.n) <= end);
  } else if (m->type == PROTO_T_EXTENT_STATES) {
    CHECK(m->u.extent_states.states +
              (size_t) m->u.extent_states.count * PROTO_EXTENT_STATE_LEN <=
          end);
  }
}

static void test_prefixes_and_mutations(void)
{
  struct proto_msg m;
  uint8_t *b = malloc(MAXF);
  unsigned seed = 12345;
  CHECK(b != NULL);
  for (int i = 0; i < nframes; i++) {
    struct frame *f = &frames[i];
    for (size_t p = 0; p < f->len; p++) {
      /* A truncated copy on the heap: ASan sees any read past it. */
      uint8_t *t = malloc(p ? p : 1);
      memcpy(t, f->b, p);
      CHECK(proto_decode(t, p, BS, &m) < 0);
      free(t);
    }
  }
  for (int k = 0; k < 10000; k++) {
    struct frame *f = &frames[k % nframes];
    memcpy(b, f->b, f->len);
    size_t len = f->len;
    int muts = 1 + rand_r(&seed) % 4;
    for (int j = 0; j < muts; j++) {
      switch (rand_r(&seed) % 3) {
      case 0:
        b[rand_r(&seed) % len] ^= (uint8_t) (1 + rand_r(&seed) % 255);
        break;
      case 1:
        b[rand_r(&seed) % (len < 32 ? len : 32)] = (uint8_t) rand_r(&seed);
        break;
      case 2: len -= rand_r(&seed) % (len > 1 ? len / 2 : 1); break;
      }
    }
    uint8_t *t = malloc(len);
    memcpy(t, b, len);
    if (proto_decode(t, len, BS, &m) == 0)
      check_inside(&m, t, len);
    free(t);
  }
  free(b);
}

#endif
