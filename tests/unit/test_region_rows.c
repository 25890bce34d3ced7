/* Unit test: the rows beside each block (downstairs/extent.c): the
 * unwritten row a first write or a trim adds and a flush drops, the
 * trim's version reconciliation compares, BAD contexts, the first-write
 * window.  Runs in a mkdtemp directory. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/resource.h>

#include "test_region.h"

/* What reconciliation compares: an unflushed trim reports its version
 * (flags 0) until a flush drops its row; a block whose bytes match none
 * of its contexts reads with PROTO_CTX_BAD; EXTENT_FLUSH sets the numbers
 * of a clean extent too, a FLUSH leaves it alone. */
static void test_reconcile_view(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  struct proto_extent_state st[EC];
  uint64_t s = 5;
  uint8_t x[BS], back[BS];
  struct proto_ctx rc;
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(write1(r, 1, 10, x, &s) == 0 && write1(r, 2, 11, x, &s) == 0);
  CHECK(region_trim(r, 1, 1, 12) == 0);
  CHECK(region_read(r, 1, 1, &rc, back) == 0 && rc.flags == 0 &&
        rc.version == 12 && all_zero(back, BS));
  region_close(r);
  CHECK(region_open(dir, &r) == 0); /* dirty: rehash keeps the trim's row */
  CHECK(region_read(r, 1, 1, &rc, back) == 0 && rc.flags == 0 &&
        rc.version == 12);
  CHECK(region_flush(r, 1, 1) == 0);
  CHECK(region_read(r, 1, 1, &rc, back) == 0 && rc.flags == 0 &&
        rc.version == 0);
  CHECK(region_read(r, 2, 1, &rc, back) == 0 && rc.flags == PROTO_CTX_PRESENT);
  /* Corrupt block 2 on disk: BAD, and its bytes are not zeroed. */
  region_close(r);
  char p[256];
  snprintf(p, sizeof p, "%s/00/000/000", dir);
  int fd = open(p, O_RDWR);
  uint8_t junk = 0x5a;
  CHECK(fd >= 0 && pwrite(fd, &junk, 1, 2 * BS + 7) == 1);
  if (fd >= 0)
    close(fd);
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_read(r, 2, 1, &rc, back) == 0 &&
        rc.flags == (PROTO_CTX_PRESENT | PROTO_CTX_BAD) && rc.version == 11);
  /* FLUSH skips a clean extent; EXTENT_FLUSH levels it. */
  CHECK(region_flush(r, 7, 1) == 0);
  CHECK(region_extent_states(r, st) == 0 && st[1].flush == 0);
  CHECK(region_extent_flush(r, 1, 8, 1) == 0);
  CHECK(region_extent_states(r, st) == 0 && st[1].flush == 8 &&
        st[1].gen == 1 && !st[1].dirty && st[0].flush == 1);
  region_close(r);
}

/* The unwritten row: added by a first write and by trim, dropped by
 * flush; reads of it are flags 0 and zeroes; zeroes written over it are a
 * real (versioned) block; version 0 is refused. */
static void test_unwritten_rows(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint64_t s = 3;
  uint8_t x[BS], back[BS], zero[BS] = {0};
  struct proto_ctx rc, c;
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(write1(r, 1, 10, x, &s) == 0); /* first write: unwritten + x */
  mkctx(&c, zero, 11);
  CHECK(region_write(r, 2, 1, &c, zero) == 0); /* replaces the unwritten row */
  mkctx(&c, x, 0);
  CHECK(region_write(r, 3, 1, &c, x) == -EINVAL);
  region_close(r);
  CHECK(count_rows(dir, "00/000/000", 1) == 2);
  CHECK(count_rows(dir, "00/000/000", 2) == 1);
  CHECK(count_rows(dir, "00/000/000", 3) == 0);
  CHECK(region_open(dir, &r) == 0); /* dirty: rehash keeps x's row only */
  CHECK(region_read(r, 2, 1, &rc, back) == 0 && rc.version == 11 &&
        rc.flags == PROTO_CTX_PRESENT && all_zero(back, BS));
  CHECK(region_flush(r, 1, 1) == 0);
  CHECK(region_trim(r, 1, 3, 0) == 0); /* block 1: x + unwritten */
  CHECK(region_read(r, 1, 1, &rc, back) == 0 && rc.flags == 0 &&
        rc.version == 0 && all_zero(back, BS));
  region_close(r);
  CHECK(count_rows(dir, "00/000/000", 1) == 2);
  CHECK(count_rows(dir, "00/000/000", 2) == 1);
  CHECK(count_rows(dir, "00/000/000", 3) == 0); /* no rows: none added */
  CHECK(region_open(dir, &r) == 0); /* rehash: zeroes match unwritten */
  CHECK(region_read(r, 1, 1, &rc, back) == 0 && rc.flags == 0);
  region_close(r);
  CHECK(count_rows(dir, "00/000/000", 1) == 0);
  CHECK(count_rows(dir, "00/000/000", 2) == 0);

  /* Trim then write before a flush; trim then flush: no rows left. */
  CHECK(region_open(dir, &r) == 0);
  CHECK(write1(r, 5, 20, NULL, &s) == 0 && write1(r, 6, 21, NULL, &s) == 0);
  CHECK(region_flush(r, 2, 1) == 0);
  CHECK(region_trim(r, 5, 2, 0) == 0 && write1(r, 5, 22, x, &s) == 0);
  CHECK(region_flush(r, 3, 1) == 0);
  CHECK(region_read(r, 5, 1, &rc, back) == 0 && rc.version == 22 &&
        memcmp(back, x, BS) == 0);
  CHECK(region_read(r, 6, 1, &rc, back) == 0 && rc.flags == 0);
  uint64_t bad = 0, checked = 0;
  CHECK(region_verify_extent(r, 0, count_bad, &bad, &checked) == 0);
  CHECK(bad == 0 && checked == 1); /* block 5: 1 and 2 lost their rows */
  region_close(r);
  CHECK(count_rows(dir, "00/000/000", 5) == 1);
  CHECK(count_rows(dir, "00/000/000", 6) == 0);
}

/* Deterministic crash window: the contexts are committed but the data
 * pwrite fails (RLIMIT_FSIZE below the block's offset gives EFBIG after
 * the commit), which leaves exactly what kill -9 between the commit and
 * the pwrite leaves.  Cases: a never-written block, a block trimmed and
 * rewritten before a flush, a block written after trim + flush.  The
 * blocks must match a context (the unwritten one) and read as zeroes. */
static void test_first_write_window(void)
{
  const char *dir = newdir();
  uint64_t es = 8192; /* 4 MiB extent; its db stays far below 1 MiB */
  struct proto_region d = geom(BS, es, 1, 0);
  struct region *r;
  uint64_t s = 11, base = es - 16;
  uint8_t back[BS];
  struct proto_ctx rc;
  struct rlimit old, lim;
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(write1(r, base + 1, 1, NULL, &s) == 0);
  CHECK(write1(r, base + 2, 2, NULL, &s) == 0);
  CHECK(region_flush(r, 1, 1) == 0);
  CHECK(region_trim(r, base + 1, 2, 0) == 0);
  CHECK(region_flush(r, 2, 1) == 0); /* base+2: trimmed and flushed */
  CHECK(write1(r, base + 1, 3, NULL, &s) == 0);
  CHECK(region_trim(r, base + 1, 1, 0) == 0); /* base+1: trimmed, not flushed */
  signal(SIGXFSZ, SIG_IGN);
  CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
  lim = old;
  lim.rlim_cur = 1u << 20;
  CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  for (uint64_t i = 0; i < 3; i++) /* base+0 never written */
    CHECK(write1(r, base + i, 10 + i, NULL, &s) == -EFBIG);
  CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
  signal(SIGXFSZ, SIG_DFL);
  region_close(r);
  CHECK(count_rows(dir, "00/000/000", base) >= 1); /* the commit happened */
  CHECK(region_open(dir, &r) == 0);
  uint64_t bad = 0, checked = 0;
  CHECK(region_verify_extent(r, 0, count_bad, &bad, &checked) == 0);
  CHECK(bad == 0);
  for (uint64_t i = 0; i < 3; i++)
    CHECK(region_read(r, base + i, 1, &rc, back) == 0 && rc.flags == 0 &&
          all_zero(back, BS));
  uint8_t bits[1];
  CHECK(region_extent_map(r, base, 3, bits) == 0 && bits[0] == 0);
  region_close(r);
  for (uint64_t i = 0; i < 3; i++)
    CHECK(count_rows(dir, "00/000/000", base + i) == 0);
}

/* Is bit i of a block map set? */
static bool map_bit(const uint8_t *bits, uint32_t i)
{
  return (bits[i / 8] >> (i % 8)) & 1;
}

/* Block status (extent_map.c) against a model: random writes, trims,
 * flushes, evictions (close + reopen of the region, which also drops the
 * in-memory map) on a region of EC extents.  Without a crash the map is
 * exact: a bit is set iff the model's block was written and not trimmed
 * since; every block whose bit is clear reads as zeroes (B1).  An extent
 * never touched is answered without opening it (no data allocated). */
static void test_block_map(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint64_t s = 77, v = 1;
  bool model[NBLK] = {false};
  uint8_t bits[(ES + 7) / 8], back[BS];
  struct proto_ctx rc;
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(region_extent_map(r, 0, ES, bits) == 0 && all_zero(bits, sizeof bits));
  CHECK(!region_extent_is_open(r, 0)); /* the probe needed no SQLite */
  CHECK(region_extent_map(r, ES - 1, 2, bits) == -EINVAL); /* crosses */
  CHECK(region_extent_map(r, NBLK, 1, bits) == -EINVAL);
  for (int op = 0; op < 400; op++) {
    uint64_t k = rnd(&s) % 100, lba = rnd(&s) % (NBLK - 8);
    uint32_t n = (uint32_t) (rnd(&s) % 8 + 1);
    if (lba / ES != (lba + n - 1) / ES)
      n = (uint32_t) (ES - lba % ES);
    if (k < 50) {
      for (uint32_t i = 0; i < n; i++) {
        CHECK(write1(r, lba + i, v++, NULL, &s) == 0);
        model[lba + i] = true;
      }
    } else if (k < 80) {
      CHECK(region_trim(r, lba, n, v++) == 0);
      for (uint32_t i = 0; i < n; i++)
        model[lba + i] = false;
    } else if (k < 90) {
      CHECK(region_flush(r, v, 1) == 0);
      v++;
    } else {
      region_close(r); /* dirty extents recover at their next open */
      CHECK(region_open(dir, &r) == 0);
    }
    uint32_t e = (uint32_t) (rnd(&s) % EC);
    CHECK(region_extent_map(r, (uint64_t) e * ES, ES, bits) == 0);
    for (uint32_t i = 0; i < ES; i++) {
      uint64_t b = (uint64_t) e * ES + i;
      if (map_bit(bits, i) != model[b]) {
        fprintf(stderr, "op %d: block %" PRIu64 ": map %d, model %d\n", op, b,
                map_bit(bits, i), model[b]);
        CHECK(map_bit(bits, i) == model[b]);
      }
      if (!map_bit(bits, i))
        CHECK(region_read(r, b, 1, &rc, back) == 0 && rc.flags == 0 &&
              all_zero(back, BS));
    }
  }
  /* A sub-range is the same bits, shifted to bit 0. */
  uint8_t sub[2];
  CHECK(region_extent_map(r, 3, 9, sub) == 0);
  for (uint32_t i = 0; i < 9; i++)
    CHECK(map_bit(sub, i) == model[3 + i]);
  CHECK((sub[1] >> 1) == 0); /* bits past n stay zero */
  region_close(r);
}

int main(void)
{
  static const struct region_test tests[] = {
      {"unwritten_rows", test_unwritten_rows},
      {"reconcile_view", test_reconcile_view},
      {"first_write_window", test_first_write_window},
      {"block_map", test_block_map}};
  return region_tests_run("test_region_rows", tests,
                          sizeof tests / sizeof tests[0]);
}
