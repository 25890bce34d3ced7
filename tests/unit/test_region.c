/* Unit test: downstairs/region.c + extent.c.  Round trips, flush metadata,
 * region.json persistence, a random op stream checked against a flat
 * array, the crash rule (simulated and with real kill -9), LRU eviction
 * and the on-disk extent paths.  Runs in a mkdtemp directory. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../common/crypt.h"
#include "../../common/geom.h"
#include "../../common/log.h"
#include "../../downstairs/region.h"

#include "../../downstairs/extent.h"
#include "test_region.h"

static void test_create_open(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0), d2 = d;
  struct region *r;
  CHECK(region_open(dir, &r) == -ENOENT);
  CHECK(region_create(dir, &d) == 0);
  CHECK(geom_uuid_is_zero(d.uuid)); /* no volume yet */
  CHECK(region_create(dir, &d2) == -EEXIST);
  CHECK(region_open(dir, &r) == 0);
  const struct proto_region *g = region_def(r);
  CHECK(g->block_size == BS && g->extent_size == ES && g->extent_count == EC &&
        !g->encrypted);
  CHECK(geom_uuid_is_zero(g->uuid));
  struct region *r2;
  CHECK(region_open(dir, &r2) == -EBUSY); /* one daemon per region */
  /* It adopts one uuid, persisted; the same again is fine, another not. */
  uint8_t u1[PROTO_UUID_LEN], u2[PROTO_UUID_LEN], z[PROTO_UUID_LEN] = {0};
  memset(u1, 0x11, sizeof u1);
  memset(u2, 0x22, sizeof u2);
  CHECK(region_set_uuid(r, z) == -EINVAL);
  CHECK(region_set_uuid(r, u1) == 0);
  CHECK(memcmp(region_def(r)->uuid, u1, PROTO_UUID_LEN) == 0);
  CHECK(region_set_uuid(r, u1) == 0);
  CHECK(region_set_uuid(r, u2) == -EEXIST);
  region_close(r);
  CHECK(region_open(dir, &r) == 0);
  CHECK(memcmp(region_def(r)->uuid, u1, PROTO_UUID_LEN) == 0);
  CHECK(region_set_uuid(r, u2) == -EEXIST);
  region_close(r);

  /* Given uuid, non-empty directory, bad geometry. */
  struct proto_region e = geom(4096, 8, 2, 1);
  for (int i = 0; i < PROTO_UUID_LEN; i++)
    e.uuid[i] = (uint8_t) (i + 1);
  const char *dir2 = newdir();
  CHECK(region_create(dir2, &e) == 0);
  CHECK(region_open(dir2, &r) == 0);
  CHECK(memcmp(region_def(r)->uuid, e.uuid, 16) == 0);
  CHECK(region_def(r)->encrypted == 1);
  region_close(r);
  char p[256];
  const char *dir3 = newdir();
  CHECK(mkdir(dir3, 0755) == 0);
  snprintf(p, sizeof p, "%s/junk", dir3);
  CHECK(mkdir(p, 0755) == 0);
  CHECK(region_create(dir3, &d2) == -ENOTEMPTY);
  struct proto_region bad = geom(1000, 8, 2, 0);
  CHECK(region_create(newdir(), &bad) == -EINVAL);

  /* Malformed region.json is refused. */
  snprintf(p, sizeof p, "%s/region.json", dir2);
  FILE *f = fopen(p, "w");
  fputs("{\"version\":1,\"block_size\":4096}\n", f);
  fclose(f);
  CHECK(region_open(dir2, &r) == -EINVAL);
}

static void test_round_trip(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint64_t s = 42;
  uint8_t data[4 * BS], back[4 * BS];
  struct proto_ctx c[4], rc[4];
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);

  /* Unwritten: zeroes, flags 0. */
  memset(back, 0xaa, sizeof back);
  CHECK(region_read(r, 10, 4, rc, back) == 0);
  for (int i = 0; i < 4; i++)
    CHECK(rc[i].flags == 0);
  for (size_t i = 0; i < sizeof back; i++)
    if (back[i] != 0) {
      CHECK(back[i] == 0);
      break;
    }

  fill(data, sizeof data, &s);
  for (int i = 0; i < 4; i++)
    mkctx(&c[i], data + i * BS, 100 + (uint64_t) i);
  CHECK(region_write(r, 10, 4, c, data) == 0);
  CHECK(region_read(r, 10, 4, rc, back) == 0);
  CHECK(memcmp(back, data, sizeof data) == 0);
  for (int i = 0; i < 4; i++)
    CHECK(rc[i].flags == PROTO_CTX_PRESENT && rc[i].version == 100u + i &&
          rc[i].hash == c[i].hash);

  /* Bad hash: -EBADMSG, nothing stored. */
  c[2].hash ^= 1;
  CHECK(region_write(r, 20, 4, c, data) == -EBADMSG);
  CHECK(region_read(r, 20, 4, rc, back) == 0);
  for (int i = 0; i < 4; i++)
    CHECK(rc[i].flags == 0);

  /* Range checks: crossing an extent, past the end, n = 0. */
  CHECK(region_write(r, ES - 2, 4, c, data) == -EINVAL);
  CHECK(region_read(r, NBLK, 1, rc, back) == -EINVAL);
  CHECK(region_trim(r, 0, 0, 0) == -EINVAL);

  /* Trim: unwritten again. */
  CHECK(region_trim(r, 11, 2, 0) == 0);
  CHECK(region_read(r, 10, 4, rc, back) == 0);
  CHECK(rc[0].flags && !rc[1].flags && !rc[2].flags && rc[3].flags);
  CHECK(memcmp(back, data, BS) == 0);
  for (size_t i = BS; i < 3 * BS; i++)
    if (back[i] != 0) {
      CHECK(back[i] == 0);
      break;
    }

  /* Flush metadata. */
  struct proto_extent_state st[EC];
  CHECK(region_extent_states(r, st) == 0);
  CHECK(st[0].dirty == 1 && st[1].dirty == 0 && st[0].flush == 0);
  CHECK(region_flush(r, 7, 3) == 0);
  CHECK(region_extent_states(r, st) == 0);
  CHECK(st[0].dirty == 0 && st[0].flush == 7 && st[0].gen == 3);
  CHECK(st[1].flush == 0 && st[1].gen == 0); /* clean extents untouched */
  region_close(r);
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_extent_states(r, st) == 0);
  CHECK(st[0].dirty == 0 && st[0].flush == 7 && st[0].gen == 3);
  CHECK(region_read(r, 10, 1, rc, back) == 0 && rc[0].version == 100);

  /* kcv and highest_gen persist. */
  struct proto_kcv k, k2;
  CHECK(region_get_kcv(r, &k) == 0 && region_highest_gen(r) == 0);
  memset(k.nonce, 0x11, sizeof k.nonce);
  memset(k.tag, 0x22, sizeof k.tag);
  CHECK(region_set_kcv(r, &k) == 0 && region_set_highest_gen(r, 9) == 0);
  region_close(r);
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_get_kcv(r, &k2) == 1 && memcmp(&k, &k2, sizeof k) == 0);
  CHECK(region_highest_gen(r) == 9);
  region_close(r);
}

static void test_encrypted(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, 1, 1);
  struct region *r;
  uint64_t s = 7;
  uint8_t data[BS], back[BS];
  struct proto_ctx c = {.version = 5, .flags = PROTO_CTX_PRESENT}, rc;
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  fill(data, BS, &s);
  fill(c.nonce, sizeof c.nonce, &s);
  fill(c.tag, sizeof c.tag, &s);
  c.hash = crypt_hash_plain(data, BS); /* wrong kind of hash */
  CHECK(region_write(r, 3, 1, &c, data) == -EBADMSG);
  c.hash = crypt_hash_cipher(c.nonce, c.tag, data, BS);
  CHECK(region_write(r, 3, 1, &c, data) == 0);
  CHECK(region_read(r, 3, 1, &rc, back) == 0);
  CHECK(memcmp(back, data, BS) == 0 && rc.hash == c.hash &&
        memcmp(rc.nonce, c.nonce, 12) == 0 && memcmp(rc.tag, c.tag, 16) == 0);
  region_close(r);
}

/* Random writes/trims/flushes/reopens against a flat array. */
static void test_model(void)
{
  const char *dir = newdir_fast();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  static uint8_t model[NBLK * BS], back[NBLK * BS], buf[8 * BS];
  static uint64_t mver[NBLK];
  struct proto_ctx c[8], rc[ES];
  uint64_t s = 12345, version = 1;
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  for (int op = 0; op < 3000; op++) {
    uint64_t kind = rnd(&s) % 100, lba = rnd(&s) % NBLK;
    uint32_t left = (uint32_t) (ES - lba % ES);
    uint32_t n = (uint32_t) (rnd(&s) % 8) + 1;
    n = n < left ? n : left;
    if (kind < 70) {
      fill(buf, n * BS, &s);
      for (uint32_t i = 0; i < n; i++)
        mkctx(&c[i], buf + i * BS, version++);
      CHECK(region_write(r, lba, n, c, buf) == 0);
      memcpy(model + lba * BS, buf, n * BS);
      for (uint32_t i = 0; i < n; i++)
        mver[lba + i] = c[i].version;
    } else if (kind < 85) {
      CHECK(region_trim(r, lba, n, 0) == 0);
      memset(model + lba * BS, 0, n * BS);
      memset(mver + lba, 0, n * sizeof *mver);
    } else if (kind < 95) {
      CHECK(region_flush(r, (uint64_t) op, 1) == 0);
    } else {
      region_close(r);
      CHECK(region_open(dir, &r) == 0);
    }
  }
  for (uint32_t e = 0; e < EC; e++) {
    CHECK(region_read(r, e * ES, ES, rc, back + e * ES * BS) == 0);
    for (uint32_t i = 0; i < ES; i++)
      CHECK(rc[i].version == mver[e * ES + i] &&
            (rc[i].flags != 0) == (mver[e * ES + i] != 0));
  }
  CHECK(memcmp(back, model, sizeof model) == 0);
  region_close(r);
}

/* A second context appended without a flush (and one committed whose
 * pwrite never happened): reads still find the matching one, and opening
 * the dirty extent drops the stale row. */
static void test_crash_sim(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint64_t s = 99;
  uint8_t v1[BS], v2[BS], back[BS];
  struct proto_ctx rc;
  /* The extent databases are locked while open: count rows when closed. */
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(write1(r, 5, 1, v1, &s) == 0);
  CHECK(region_flush(r, 1, 1) == 0);
  region_close(r);
  CHECK(count_rows(dir, "00/000/000", 5) == 1);
  CHECK(region_open(dir, &r) == 0);
  CHECK(write1(r, 5, 2, v2, &s) == 0);
  region_close(r); /* no flush: both contexts kept */
  CHECK(count_rows(dir, "00/000/000", 5) == 2);
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_read(r, 5, 1, &rc, back) == 0);
  CHECK(rc.version == 2 && memcmp(back, v2, BS) == 0);
  region_close(r);
  CHECK(count_rows(dir, "00/000/000", 5) == 1); /* rehashed on open */

  /* Crash between COMMIT and pwrite: a context for bytes never written. */
  char p[256];
  sqlite3 *db;
  snprintf(p, sizeof p, "%s/00/000/000.db", dir);
  CHECK(sqlite3_open(p, &db) == SQLITE_OK);
  CHECK(sqlite3_exec(db,
                     "INSERT INTO block_context VALUES(5, 3, 77, zeroblob(12),"
                     " zeroblob(16), 12345);"
                     "UPDATE metadata SET value=1 WHERE name='dirty';",
                     NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_close(db);
  CHECK(count_rows(dir, "00/000/000", 5) == 2);
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_read(r, 5, 1, &rc, back) == 0);
  CHECK(rc.version == 2 && memcmp(back, v2, BS) == 0);
  region_close(r);
  CHECK(count_rows(dir, "00/000/000", 5) == 1);
}

/* kill -9 geometry: 4 KiB blocks, 8 MiB (sparse) so that the child
 * keeps finding never-written blocks for the whole 30 ms. */
#define KBS 4096u
#define KES 512u
#define KEC 4u
#define KCH 4u /* blocks per write at most */

static void kwrite(struct region *r, uint64_t lba, uint32_t n, uint64_t *v,
                   uint64_t *s)
{
  static uint8_t buf[KCH * KBS];
  struct proto_ctx c[KCH];
  fill(buf, (size_t) n * KBS, s);
  for (uint32_t i = 0; i < n; i++) {
    memset(&c[i], 0, sizeof c[i]);
    c[i].version = (*v)++;
    c[i].hash = crypt_hash_plain(buf + i * KBS, KBS);
    c[i].flags = PROTO_CTX_PRESENT;
  }
  if (region_write(r, lba, n, c, buf) < 0)
    _exit(5);
}

/* The same n blocks as one group of single-block writes (group commit:
 * one transaction), the first block written twice. */
static void kwrite_group(struct region *r, uint64_t lba, uint32_t n,
                         uint64_t *v, uint64_t *s)
{
  static uint8_t buf[(KCH + 1) * KBS];
  struct proto_ctx c[KCH + 1];
  struct region_wr w[KCH + 1];
  fill(buf, (size_t) (n + 1) * KBS, s);
  for (uint32_t i = 0; i <= n; i++) {
    memset(&c[i], 0, sizeof c[i]);
    c[i].version = (*v)++;
    c[i].hash = crypt_hash_plain(buf + i * KBS, KBS);
    c[i].flags = PROTO_CTX_PRESENT;
    w[i] = (struct region_wr){.lba = lba + (i < n ? i : 0),
                              .n = 1,
                              .ctxs = &c[i],
                              .data = buf + i * KBS};
  }
  region_write_group(r, w, n + 1);
  for (uint32_t i = 0; i <= n; i++)
    if (w[i].err < 0)
      _exit(5);
}

/* The child, until killed: mostly first writes to never-written blocks
 * (the window the unwritten row closes: committed, not yet written);
 * trims of written blocks, most rewritten at once (before a flush);
 * rewrites of written or trimmed blocks; now and then a flush. */
static void kill9_child(const char *dir, uint64_t seed, int wfd)
{
  struct region *r;
  uint64_t s = seed, v = 1, fresh = 0;
  if (region_open(dir, &r) < 0)
    _exit(3);
  for (int op = 0;; op++) {
    uint64_t k = rnd(&s) % 100, n = rnd(&s) % KCH + 1;
    uint64_t old = fresh > KCH ? rnd(&s) % (fresh - KCH) : 0;
    if (fresh + KCH > KES * KEC)
      fresh = 0; /* wrapped: rewrites from now on */
    n = n < KES - fresh % KES ? n : KES - fresh % KES;
    if (k < 3) {
      if (region_flush(r, v, 1) < 0)
        _exit(5);
    } else if (k < 20 && fresh > KCH) {
      uint32_t m = KCH - (uint32_t) (old % KES % KCH); /* stay in extent */
      if (region_trim(r, old, m, 0) < 0)
        _exit(5);
      if (k < 14) /* trim then write before a flush */
        kwrite(r, old, m, &v, &s);
    } else if (k < 30 && fresh > KCH) {
      kwrite(r, old, 1, &v, &s); /* maybe a trimmed block */
    } else {
      if (k < 65)
        kwrite(r, fresh, (uint32_t) n, &v, &s);
      else
        kwrite_group(r, fresh, (uint32_t) n, &v, &s);
      fresh += n;
    }
    if (op == 40 && write(wfd, "x", 1) != 1) /* some ops done */
      _exit(4);
  }
}

/* After the kill: every block with contexts matches one (verify), and
 * every block read as unwritten holds zeroes on disk.  Returns the
 * number of bad blocks. */
static uint64_t kill9_check(const char *dir)
{
  static uint8_t data[KES * KBS], raw[KES * KBS]; /* 2 MiB each */
  static struct proto_ctx rc[KES];
  struct region *r;
  uint64_t bad = 0, checked = 0, total = 0;
  CHECK(region_open(dir, &r) == 0);
  for (uint32_t e = 0; e < KEC; e++) {
    char p[256], ext[EXT_PATH_MAX];
    ext_path(e, ext);
    snprintf(p, sizeof p, "%s/%s", dir, ext);
    CHECK(region_verify_extent(r, e, count_bad, &bad, &checked) == 0);
    total += checked;
    CHECK(region_read(r, (uint64_t) e * KES, KES, rc, data) == 0);
    int fd = open(p, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, raw, sizeof raw, 0) == (ssize_t) sizeof raw);
    if (fd >= 0)
      close(fd);
    for (uint32_t i = 0; i < KES; i++)
      if (rc[i].flags == 0 && !all_zero(raw + (size_t) i * KBS, KBS))
        bad++;
    /* Block status after the crash (extent_map.c, B1): a block the map
     * calls zeroes reads as zeroes. */
    static uint8_t bits[(KES + 7) / 8];
    CHECK(region_extent_map(r, (uint64_t) e * KES, KES, bits) == 0);
    for (uint32_t i = 0; i < KES; i++)
      if (!((bits[i / 8] >> (i % 8)) & 1) &&
          (rc[i].flags != 0 || !all_zero(data + (size_t) i * KBS, KBS)))
        bad++;
  }
  region_close(r);
  CHECK(total > 0);
  return bad;
}

/* kill -9 at instants spread over 0..30 ms after the child's first ops;
 * afterwards every written block matches a context. */
static void test_kill9(void)
{
  const int rounds = 40;
  uint64_t s = 4242, failed = 0;
  for (int round = 0; round < rounds; round++) {
    const char *dir = newdir_fast();
    struct proto_region d = geom(KBS, KES, KEC, 0);
    CHECK(region_create(dir, &d) == 0);
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(pfd[0]);
      kill9_child(dir, 1000 + (uint64_t) round, pfd[1]);
    }
    char x;
    close(pfd[1]);
    CHECK(read(pfd[0], &x, 1) == 1);
    close(pfd[0]);
    long us = (long) (round * 30000 / (rounds - 1)) + (long) (rnd(&s) % 300);
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    uint64_t bad = kill9_check(dir);
    if (bad) {
      fprintf(stderr, "kill9 round %d (%ld us): %" PRIu64 " bad blocks\n",
              round, us, bad);
      failed++;
    }
  }
  CHECK(failed == 0);
}

/* Extent paths and more extents than REGION_MAX_OPEN_EXTENTS.  4097
 * extents so that "00/001/000" exists (on tmpfs: creating 8194 files and
 * syncing them costs seconds on a disk).  67 extents are written, 3 more
 * than may be open. */
static void test_paths_lru(void)
{
  const char *dir = newdir_fast();
  uint32_t ec = 4097, nused = 67;
  struct proto_region d = geom(BS, 2, ec, 0);
  struct region *r;
  char p[256];
  struct stat st;
  uint64_t s = 5;
  CHECK(region_create(dir, &d) == 0);
  static const char *const names[] = {"00/000/000", "00/000/00A", "00/000/FFF",
                                      "00/001/000"};
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    CHECK(stat(p, &st) == 0 && st.st_size == 2 * BS);
    snprintf(p, sizeof p, "%s/%s.db", dir, names[i]);
    CHECK(stat(p, &st) == 0);
  }
  snprintf(p, sizeof p, "%s/seed.db", dir);
  CHECK(stat(p, &st) == 0);

  /* Extents 0, 63, ..., 4095 and 4096 ("00/001/000"). */
  CHECK(REGION_MAX_OPEN_EXTENTS < 67);
  CHECK(region_open(dir, &r) == 0);
  static uint8_t want[67][BS];
  uint8_t back[BS];
  struct proto_ctx rc;
  for (uint32_t i = 0; i < nused; i++) {
    uint64_t eid = i < 66 ? i * 63 : 4096;
    CHECK(write1(r, eid * 2 + 1, i + 1, want[i], &s) == 0);
  }
  for (uint32_t i = 0; i < nused; i++) {
    uint64_t eid = i < 66 ? i * 63 : 4096;
    CHECK(region_read(r, eid * 2 + 1, 1, &rc, back) == 0);
    CHECK(rc.version == i + 1 && memcmp(back, want[i], BS) == 0);
  }
  /* 64 open dirty extents flushed in parallel (region_flush_n's
   * flush_open), the 3 evicted ones after, one at a time: each once. */
  uint32_t nfl = 0;
  CHECK(region_flush_n(r, 4, 2, &nfl) == 0 && nfl == nused);
  static struct proto_extent_state sts[4097];
  CHECK(region_extent_states(r, sts) == 0);
  for (uint32_t e = 0; e < ec; e++) {
    bool used = e % 63 == 0 || e == 4096;
    CHECK(sts[e].dirty == 0 && sts[e].flush == (used ? 4u : 0u));
    if (sts[e].dirty || sts[e].flush != (used ? 4u : 0u)) {
      fprintf(stderr, "extent %u\n", e);
      break;
    }
  }
  region_close(r);
  CHECK(raw_block(dir, "00/001/000", 1, BS, back) == 0 &&
        memcmp(back, want[66], BS) == 0);
}

/* A FLUSH whose one extent cannot sync (its data file descriptor
 * replaced by a pipe: fdatasync and sync_file_range fail) fails, and the
 * extents flushed beside it in parallel are still flushed and clean:
 * the error is not lost among the threads, and it stops nobody else. */
static void test_flush_error(void)
{
  const char *dir = newdir_fast();
  struct proto_region d = geom(BS, 2, 4, 0);
  struct region *r;
  uint64_t s = 9;
  char want[512], link[512];
  CHECK(region_create(dir, &d) == 0);
  CHECK(region_open(dir, &r) == 0);
  for (uint64_t eid = 0; eid < 4; eid++)
    CHECK(write1(r, eid * 2, eid + 1, NULL, &s) == 0);
  snprintf(want, sizeof want, "%s/00/000/002", dir);
  int fd = -1;
  for (int i = 0; i < 1024 && fd < 0; i++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", i);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n > 0) {
      link[n] = 0;
      if (strcmp(link, want) == 0)
        fd = i;
    }
  }
  CHECK(fd >= 0);
  int p[2];
  CHECK(pipe(p) == 0);
  CHECK(dup2(p[0], fd) == fd);
  uint32_t n = 0;
  CHECK(region_flush_n(r, 5, 1, &n) < 0);
  struct proto_extent_state sts[4];
  CHECK(region_extent_states(r, sts) == 0);
  for (uint32_t e = 0; e < 4; e++)
    CHECK(e == 2 ? sts[e].dirty == 1 : sts[e].dirty == 0 && sts[e].flush == 5);
  close(p[0]);
  close(p[1]);
  region_close(r);
}

/* Threads on disjoint extents of a region with more extents than may be
 * open: pins, eviction and reopen race; every read must see its write. */
struct worker {
  struct region *r;
  int id, errors;
};

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  uint64_t s = 77 + (uint64_t) w->id;
  uint8_t want[BS], back[BS];
  struct proto_ctx rc;
  for (int i = 0; i < 150; i++) {
    uint64_t eid = (rnd(&s) % 50) * 4 + (uint64_t) w->id; /* 200 extents */
    uint64_t lba = eid * 2 + rnd(&s) % 2, v = (uint64_t) i + 1;
    if (write1(w->r, lba, v, want, &s) < 0 ||
        region_read(w->r, lba, 1, &rc, back) < 0 || rc.version != v ||
        memcmp(back, want, BS) != 0)
      w->errors++;
  }
  return NULL;
}

static void test_threads(void)
{
  const char *dir = newdir_fast();
  struct proto_region d = geom(BS, 2, 200, 0);
  struct region *r;
  struct worker w[4];
  pthread_t t[4];
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  for (int i = 0; i < 4; i++) {
    w[i] = (struct worker){.r = r, .id = i};
    CHECK(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    CHECK(w[i].errors == 0);
  }
  CHECK(region_flush(r, 1, 1) == 0);
  uint64_t bad = 0, checked = 0;
  for (uint32_t e = 0; e < 200; e++)
    CHECK(region_verify_extent(r, e, count_bad, &bad, &checked) == 0);
  CHECK(bad == 0);
  region_close(r);
}

/* region_write_group: in order, each its own result; the last write of
 * a block wins; a bad hash fails only its write; another extent is
 * refused; rows as after the same writes one by one. */
static void test_write_group(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint8_t b[5][BS], out[3 * BS];
  struct proto_ctx c[5], rc[3];
  uint64_t s = 99;
  CHECK(region_create(dir, &d) == 0);
  CHECK(region_open(dir, &r) == 0);
  for (int i = 0; i < 5; i++) {
    fill(b[i], BS, &s);
    mkctx(&c[i], b[i], 10 + (uint64_t) i);
  }
  c[2].hash ^= 1; /* its data does not match */
  struct region_wr w[5] = {
      {.lba = 3, .n = 1, .ctxs = &c[0], .data = b[0]},
      {.lba = 3, .n = 1, .ctxs = &c[1], .data = b[1]},
      {.lba = 4, .n = 1, .ctxs = &c[2], .data = b[2]},
      {.lba = 5, .n = 1, .ctxs = &c[3], .data = b[3]},
      {.lba = ES + 1, .n = 1, .ctxs = &c[4], .data = b[4]}};
  region_write_group(r, w, 5);
  CHECK(w[0].err == 0 && w[1].err == 0 && w[3].err == 0);
  CHECK(w[2].err == -EBADMSG);
  CHECK(w[4].err == -EINVAL);
  CHECK(region_read(r, 3, 3, rc, out) == 0);
  CHECK(memcmp(out, b[1], BS) == 0 && rc[0].version == 11);
  CHECK(rc[1].flags == 0 && all_zero(out + BS, BS)); /* refused: unwritten */
  CHECK(memcmp(out + 2 * BS, b[3], BS) == 0 && rc[2].version == 13);
  CHECK(region_read(r, ES + 1, 1, rc, out) == 0 && rc[0].flags == 0);
  region_close(r);
  /* Block 3: the unwritten row and both writes' rows (kept until a
   * flush), as two region_write calls would leave. */
  CHECK(count_rows(dir, "00/000/000", 3) == 3);
}

/* Whether preadv2(RWF_NOWAIT) works on PATH.  Without it (qemu-user 7.2
 * answers EOPNOTSUPP; some filesystems too) every data read_now is
 * deferred (-EAGAIN: a worker reads it), which is slower, not wrong. */
static bool nowait_works(const char *path)
{
  uint8_t b[16];
  struct iovec iov = {.iov_base = b, .iov_len = sizeof b};
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0);
  ssize_t r = preadv2(fd, &iov, 1, 0, RWF_NOWAIT);
  bool ok = r >= 0 || errno == EAGAIN;
  close(fd);
  return ok;
}

/* region_read_now: -EAGAIN while the extent is closed or its bytes are
 * not cached (nothing filled), else exactly what region_read returns;
 * versions (data NULL) need only the open extent. */
static void test_read_now(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint8_t b[BS], out[2 * BS], out2[2 * BS];
  struct proto_ctx rc[2], rc2[2];
  uint64_t s = 7;
  CHECK(region_create(dir, &d) == 0);
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_read_now(r, 9, 2, rc, out) == -EAGAIN); /* not open */
  CHECK(region_read_now(r, 9, 2, rc, NULL) == -EAGAIN);
  CHECK(write1(r, 10, 5, b, &s) == 0);
  char p[256];
  snprintf(p, sizeof p, "%s/00/000/000", dir);
  memset(out, 0xee, sizeof out);
  /* Block 10's context is still in the journal: folding it is a
   * transaction, so not now; a read that may wait folds it. */
  CHECK(region_read_now(r, 9, 2, rc, out) == -EAGAIN);
  CHECK(region_read_now(r, 10, 1, rc, NULL) == -EAGAIN);
  CHECK(region_read_now(r, 8, 2, rc, out) == 0 || nowait_works(p) == 0);
  CHECK(region_read(r, 8, 1, rc2, out2) == 0);
  CHECK(region_read_now(r, 10, 1, rc, NULL) == -EAGAIN);
  CHECK(region_read(r, 10, 1, rc2, out2) == 0 && rc2[0].version == 5);
  if (nowait_works(p)) {
    CHECK(region_read_now(r, 9, 2, rc, out) == 0);
    CHECK(region_read(r, 9, 2, rc2, out2) == 0);
    CHECK(memcmp(out, out2, sizeof out) == 0 && memcmp(out + BS, b, BS) == 0);
    CHECK(memcmp(rc, rc2, sizeof rc) == 0 && rc[1].version == 5);
  } else {
    printf("read_now: no RWF_NOWAIT here: data reads deferred\n");
    CHECK(region_read_now(r, 9, 2, rc, out) == -EAGAIN);
  }
  CHECK(region_read_now(r, 10, 1, rc, NULL) == 0 && rc[0].version == 5);
  CHECK(region_read_now(r, ES - 1, 2, rc, out) == -EINVAL); /* 2 extents */
  /* Out of the page cache: the data read must wait, so -EAGAIN. */
  int fd = open(p, O_RDONLY);
  CHECK(fd >= 0 && fdatasync(fd) == 0);
  CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
  close(fd);
  int rn = region_read_now(r, 10, 1, rc, out);
  CHECK(rn == -EAGAIN || rn == 0); /* a filesystem may keep it anyway */
  if (rn == -EAGAIN)
    printf("read_now: uncached block -> EAGAIN\n");
  CHECK(region_read(r, 10, 1, rc, out) == 0 && memcmp(out, b, BS) == 0);
  /* region_write_group_now: a block never reserved (fallocate due) or a
   * closed extent: -EAGAIN, nothing written; a reserved one: written. */
  uint8_t nb[BS];
  struct proto_ctx nc;
  fill(nb, BS, &s);
  mkctx(&nc, nb, 6);
  struct region_wr w = {.lba = 11, .n = 1, .ctxs = &nc, .data = nb};
  CHECK(region_write_group_now(r, &w, 1) == -EAGAIN);
  CHECK(region_read(r, 11, 1, rc, out) == 0 && rc[0].flags == 0);
  w.lba = 10;
  CHECK(region_write_group_now(r, &w, 1) == 0 && w.err == 0);
  CHECK(region_read(r, 10, 1, rc, out) == 0 && rc[0].version == 6);
  CHECK(memcmp(out, nb, BS) == 0);
  w.lba = ES + 3; /* extent 1: not open */
  CHECK(region_write_group_now(r, &w, 1) == -EAGAIN);
  nc.hash ^= 1; /* a refused write is answered, not deferred */
  w.lba = 10;
  CHECK(region_write_group_now(r, &w, 1) == 0 && w.err == -EBADMSG);
  region_close(r);
}

/* The WAL hook that replaces SQLite's auto-checkpoint still bounds the
 * -wal file: 4000 commits of one extent (~2 pages each) stay under
 * EXT_WAL_CHECKPOINT + a commit's pages. */
static void test_wal_bounded(void)
{
  const char *dir = newdir_fast();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint64_t s = 5;
  struct stat st;
  char p[256];
  CHECK(region_create(dir, &d) == 0);
  CHECK(region_open(dir, &r) == 0);
  for (uint64_t v = 1; v <= 4000; v++)
    CHECK(write1(r, v % ES, v, NULL, &s) == 0);
  snprintf(p, sizeof p, "%s/00/000/000.db-wal", dir);
  CHECK(stat(p, &st) == 0);
  CHECK(st.st_size < (off_t) (EXT_WAL_CHECKPOINT + 64) * (4096 + 24));
  region_close(r);
}

int main(void)
{
  static const struct region_test tests[] = {
      {"create_open", test_create_open}, {"round_trip", test_round_trip},
      {"encrypted", test_encrypted},     {"model", test_model},
      {"crash_sim", test_crash_sim},     {"kill9", test_kill9},
      {"write_group", test_write_group}, {"read_now", test_read_now},
      {"wal_bounded", test_wal_bounded}, {"paths_lru", test_paths_lru},
      {"threads", test_threads},         {"flush_error", test_flush_error}};
  return region_tests_run("test_region", tests, sizeof tests / sizeof tests[0]);
}
