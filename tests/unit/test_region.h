/* Shared by the region unit tests (test_region.c, test_region_rows.c):
 * a mkdtemp directory, fresh region paths, geometry, contexts, small
 * writes and readers of the on-disk state.  All static inline, so a
 * test file that uses a part is not warned about the rest. */
#ifndef CRUCIBLE_TEST_REGION_H
#define CRUCIBLE_TEST_REGION_H

#include <fcntl.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../common/crypt.h"
#include "../../common/log.h"
#include "../../downstairs/region.h"
#include "test.h"

#define BS 512u
#define ES 64u
#define EC 4u
#define NBLK (ES * EC)

static char tmp[64], tmp_fast[64];
static int seq;

static inline uint64_t rnd(uint64_t *s)
{
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

/* A fresh region directory path under base (not created); the last 64
 * stay valid. */
static inline const char *newdir_in(const char *base)
{
  static char p[64][128];
  char *q = p[seq % 64];
  snprintf(q, sizeof p[0], "%s/r%d", base, seq);
  seq++;
  return q;
}

/* On the real filesystem (tmp): small tests, where ext4's fallocate,
 * punch hole and fdatasync are what runs. */
static inline const char *newdir(void)
{
  return newdir_in(tmp);
}

/* On tmpfs when available (tmp_fast): the long tests, whose thousands of
 * fdatasyncs and file creations take seconds on a busy disk and whose
 * subject (ordering under kill -9, eviction, threads) does not depend on
 * the filesystem. */
static inline const char *newdir_fast(void)
{
  return newdir_in(tmp_fast);
}

static inline struct proto_region geom(uint32_t bs, uint64_t es, uint32_t ec,
                                       uint8_t enc)
{
  struct proto_region d = {.block_size = bs,
                           .extent_size = es,
                           .extent_count = ec,
                           .encrypted = enc};
  return d;
}

static inline void mkctx(struct proto_ctx *c, const uint8_t *data,
                         uint64_t version)
{
  memset(c, 0, sizeof *c);
  c->version = version;
  c->hash = crypt_hash_plain(data, BS);
  c->flags = PROTO_CTX_PRESENT;
}

static inline void fill(uint8_t *b, size_t len, uint64_t *s)
{
  for (size_t i = 0; i < len; i += 8) {
    uint64_t x = rnd(s);
    memcpy(b + i, &x, len - i < 8 ? len - i : 8);
  }
}

/* Write one block at lba with random bytes and the given version. */
static inline int write1(struct region *r, uint64_t lba, uint64_t version,
                         uint8_t *out, uint64_t *s)
{
  uint8_t buf[BS];
  struct proto_ctx c;
  fill(buf, BS, s);
  mkctx(&c, buf, version);
  if (out)
    memcpy(out, buf, BS);
  return region_write(r, lba, 1, &c, buf);
}

static inline int count_rows(const char *dir, const char *ext, uint64_t block)
{
  char p[256];
  sqlite3 *db;
  sqlite3_stmt *s;
  int n = -1;
  snprintf(p, sizeof p, "%s/%s.db", dir, ext);
  if (sqlite3_open(p, &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "SELECT count(*) FROM block_context WHERE block=?",
                         -1, &s, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, (sqlite3_int64) block);
    if (sqlite3_step(s) == SQLITE_ROW)
      n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return n;
}

static inline void count_bad(uint32_t eid, uint64_t block, void *arg)
{
  (void) eid, (void) block;
  (*(uint64_t *) arg)++;
}

/* Read block lba of a region's raw data file (extent eid's file). */
static inline int raw_block(const char *dir, const char *ext, uint64_t blk,
                            uint32_t bs, uint8_t *out)
{
  char p[256];
  snprintf(p, sizeof p, "%s/%s", dir, ext);
  int fd = open(p, O_RDONLY);
  ssize_t n = fd >= 0 ? pread(fd, out, bs, (off_t) (blk * bs)) : -1;
  if (fd >= 0)
    close(fd);
  return n == (ssize_t) bs ? 0 : -1;
}

static inline bool all_zero(const uint8_t *b, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (b[i])
      return false;
  return true;
}

/* Run the named tests (TEST_ONLY=name runs one) in fresh temp dirs. */
struct region_test {
  const char *name;
  void (*fn)(void);
};
static inline int region_tests_run(const char *prog,
                                   const struct region_test *t, size_t n)
{
  log_set_level(LOG_ERROR);
  snprintf(tmp, sizeof tmp, "/tmp/test_region.XXXXXX");
  if (mkdtemp(tmp) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(tmp_fast, sizeof tmp_fast, "/dev/shm/test_region.XXXXXX");
  if (mkdtemp(tmp_fast) == NULL)
    snprintf(tmp_fast, sizeof tmp_fast, "%s", tmp);
  const char *only = getenv("TEST_ONLY"); /* run just this test */
  for (size_t i = 0; i < n; i++) {
    struct timespec a, b;
    if (only && strcmp(only, t[i].name) != 0)
      continue;
    clock_gettime(CLOCK_MONOTONIC, &a);
    t[i].fn();
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (getenv("TEST_VERBOSE"))
      fprintf(stderr, "%s: %.2f s\n", t[i].name,
              (double) (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
  }
  char cmd[192];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", tmp, tmp_fast);
  if (system(cmd) != 0)
    fprintf(stderr, "cleanup of %s failed\n", tmp);
  return test_done(prog);
}

#endif
