/* Unit test: the context journal (downstairs/extent_jnl.c, "THE JOURNAL
 * RULE").  A write's contexts are appended to XX/YYY/ZZZ.db-jnl before its
 * data; kill -9 before any fold must lose none of them (J2, J4), a fold or
 * a flush must void them (J3), a journal of another epoch counts for
 * nothing, a torn record ends the valid prefix (J1), and every reader of
 * the rows sees the journal's contexts (J5).  Runs in a mkdtemp directory;
 * "kill -9" is a forked child that raises SIGKILL where it stands. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../../downstairs/extent.h"
#include "test_region.h"

#define NW 40 /* blocks written by the children */

/* In a child: open dir, run body, then die without closing anything. */
static void child_dies(const char *dir, void (*body)(struct region *, void *),
                       void *arg)
{
  pid_t pid = fork();
  if (pid == 0) {
    struct region *r;
    if (region_open(dir, &r) != 0)
      _exit(3);
    body(r, arg);
    raise(SIGKILL);
    _exit(4);
  }
  int status;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

struct blocks {
  uint8_t data[NW][BS];
  uint64_t seed;
  bool flush_after;
};

/* Blocks 0..NW-1 of extent 1 (version 100 + i), one write each. */
static void write_blocks(struct region *r, void *arg)
{
  struct blocks *b = arg;
  for (uint32_t i = 0; i < NW; i++)
    if (write1(r, ES + i, 100 + i, b->data[i], &b->seed) != 0)
      _exit(5);
  if (b->flush_after && region_flush(r, 3, 1) != 0)
    _exit(6);
}

/* What the child wrote (its memory died with it): the same bytes from
 * the same seed, as write1 made them. */
static void expect_blocks(struct blocks *b)
{
  uint64_t s = b->seed;
  for (uint32_t i = 0; i < NW; i++)
    fill(b->data[i], BS, &s);
}

static bool blocks_read_back(struct region *r, const struct blocks *b)
{
  uint8_t back[BS];
  struct proto_ctx c;
  bool ok = true;
  for (uint32_t i = 0; i < NW; i++)
    ok &= region_read(r, ES + i, 1, &c, back) == 0 &&
          c.flags == PROTO_CTX_PRESENT && c.version == 100 + i &&
          memcmp(back, b->data[i], BS) == 0;
  return ok;
}

static void jnl_path(const char *dir, char *p, size_t n)
{
  char rel[EXT_PATH_MAX];
  ext_path(1, rel);
  snprintf(p, n, "%s/%s.db-jnl", dir, rel);
}

/* J2, J4: kill -9 right after journaled writes (no transaction since
 * create): the extent is dirty before it is opened, and every block
 * reads back with its context; the rows were moved at open. */
static void test_kill_before_fold(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  static struct blocks b = {.seed = 11};
  struct proto_extent_state st[EC];
  struct region *r;
  char p[256];
  struct stat sb;
  CHECK(region_create(dir, &d) == 0);
  child_dies(dir, write_blocks, &b);
  expect_blocks(&b);
  jnl_path(dir, p, sizeof p);
  CHECK(stat(p, &sb) == 0);
  CHECK(count_rows(dir, "00/000/001", 5) == 0); /* only in the journal */
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_extent_states(r, st) == 0 && st[1].dirty && !st[0].dirty);
  CHECK(blocks_read_back(r, &b));
  CHECK(region_flush(r, 1, 1) == 0);
  region_close(r);
  CHECK(count_rows(dir, "00/000/001", 5) == 1);
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_extent_states(r, st) == 0 && !st[1].dirty && st[1].flush == 1);
  CHECK(blocks_read_back(r, &b));
  region_close(r);
}

/* J1, J2: kill -9 after a write's records, before its data: the old
 * bytes read back with their context (the new record is one more
 * candidate), and a block never written before reads as unwritten. */
static void write_crashing(struct region *r, void *arg)
{
  struct blocks *b = arg;
  uint8_t x[BS];
  ext__crash_at = EXT_CP_JOURNALED;
  write1(r, ES + 3, 900, x, &b->seed); /* dies here */
}

static void test_kill_after_record(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  static struct blocks b = {.seed = 16, .flush_after = true};
  struct region *r;
  uint8_t back[BS];
  struct proto_ctx c;
  CHECK(region_create(dir, &d) == 0);
  child_dies(dir, write_blocks, &b); /* flushed: blocks 0..NW-1 */
  expect_blocks(&b);
  child_dies(dir, write_crashing, &b);
  b.seed = 17;
  child_dies(dir, write_crashing, &b); /* again: a second record */
  CHECK(region_open(dir, &r) == 0);
  CHECK(blocks_read_back(r, &b));
  CHECK(region_read(r, ES + NW, 1, &c, back) == 0 && c.flags == 0 &&
        all_zero(back, BS));
  region_close(r);
  /* A block that had no row: its unwritten row comes with the record. */
  const char *dir2 = newdir();
  static struct blocks e = {.seed = 18};
  CHECK(region_create(dir2, &d) == 0);
  child_dies(dir2, write_crashing, &e);
  CHECK(region_open(dir2, &r) == 0);
  CHECK(region_read(r, ES + 3, 1, &c, back) == 0 && c.flags == 0 &&
        c.version == 0 && all_zero(back, BS));
  uint64_t bad = 0, checked = 0;
  CHECK(region_verify_extent(r, 1, count_bad, &bad, &checked) == 0 && bad == 0);
  region_close(r);
}

/* J3: a flush voids the journal in its own commit: kill -9 after it
 * leaves a clean extent, although the file still holds the records. */
static void test_flush_voids(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  static struct blocks b = {.seed = 12, .flush_after = true};
  struct proto_extent_state st[EC];
  struct region *r;
  CHECK(region_create(dir, &d) == 0);
  child_dies(dir, write_blocks, &b);
  expect_blocks(&b);
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_extent_states(r, st) == 0 && !st[1].dirty && st[1].flush == 3);
  CHECK(blocks_read_back(r, &b));
  region_close(r);
}

static int copy_file(const char *from, const char *to)
{
  static uint8_t buf[1 << 20];
  int a = open(from, O_RDONLY),
      z = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ssize_t n = a >= 0 && z >= 0 ? read(a, buf, sizeof buf) : -1;
  int r = n >= 0 && write(z, buf, (size_t) n) == n ? 0 : -1;
  if (a >= 0)
    close(a);
  if (z >= 0)
    close(z);
  return r;
}

/* A journal whose records were moved (or that belongs to another copy of
 * the database) has another epoch: put the old file back after the
 * replay and the extent stays clean; its records are not replayed. */
static void test_old_journal_void(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  static struct blocks b = {.seed = 13};
  struct proto_extent_state st[EC];
  struct region *r;
  char p[256], saved[300];
  CHECK(region_create(dir, &d) == 0);
  child_dies(dir, write_blocks, &b);
  expect_blocks(&b);
  jnl_path(dir, p, sizeof p);
  snprintf(saved, sizeof saved, "%s.saved", p);
  CHECK(copy_file(p, saved) == 0);
  CHECK(region_open(dir, &r) == 0);
  CHECK(blocks_read_back(r, &b)); /* opens the extent: the replay */
  CHECK(region_flush(r, 2, 1) == 0);
  region_close(r);
  CHECK(rename(saved, p) == 0);
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_extent_states(r, st) == 0 && !st[1].dirty && st[1].flush == 2);
  CHECK(blocks_read_back(r, &b));
  region_close(r);
}

/* J1: a torn record ends the valid prefix; the records before it are
 * kept.  (A record whose data never reached the disk is only an extra
 * candidate: the block still reads its bytes.) */
static void test_torn_record(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  static struct blocks b = {.seed = 14};
  struct region *r;
  char p[256];
  uint8_t back[BS];
  struct proto_ctx c;
  CHECK(region_create(dir, &d) == 0);
  child_dies(dir, write_blocks, &b);
  expect_blocks(&b);
  jnl_path(dir, p, sizeof p);
  int fd = open(p, O_RDWR);
  uint8_t x = 0xa5;
  CHECK(fd >= 0 && pwrite(fd, &x, 1, 30 * 64 + 40) == 1); /* record 30 */
  if (fd >= 0)
    close(fd);
  CHECK(region_open(dir, &r) == 0);
  for (uint32_t i = 0; i < NW; i++) {
    CHECK(region_read(r, ES + i, 1, &c, back) == 0);
    if (i < 30)
      CHECK(c.flags == PROTO_CTX_PRESENT && c.version == 100 + i &&
            memcmp(back, b.data[i], BS) == 0);
    else /* its context is lost (only damage does that, never kill -9:
            the data pwrite starts after the record's returned) */
      CHECK(c.flags != PROTO_CTX_PRESENT);
  }
  region_close(r);
}

/* More writes than the journal holds (it folds when full), overwrites
 * of the same blocks, a trim and reads in between (each folds first):
 * after kill -9 every block reads as the model says. */
struct churn {
  uint8_t data[ES][BS];
  uint64_t version[ES];
  uint64_t seed;
  char model_path[256];
};

static void churn_body(struct region *r, void *arg)
{
  struct churn *m = arg;
  uint8_t back[BS];
  struct proto_ctx c;
  uint64_t v = 1;
  for (uint32_t k = 0; k < 5000; k++) {
    uint32_t i = (uint32_t) (rnd(&m->seed) % ES);
    if (k % 997 == 0) {
      if (region_trim(r, ES + i, 1, ++v) != 0)
        _exit(5);
      memset(m->data[i], 0, BS);
      m->version[i] = 0;
    } else if (k % 331 == 0) {
      if (region_read(r, ES + i, 1, &c, back) != 0 ||
          memcmp(back, m->data[i], BS) != 0)
        _exit(6);
    } else if (write1(r, ES + i, ++v, m->data[i], &m->seed) != 0) {
      _exit(7);
    } else {
      m->version[i] = v;
    }
  }
  /* The model must reach the parent: a file beside the region. */
  FILE *f = fopen(m->model_path, "w");
  if (f == NULL || fwrite(m, sizeof *m, 1, f) != 1 || fclose(f) != 0)
    _exit(8);
}

static void test_churn(void)
{
  const char *dir = newdir_fast();
  struct proto_region d = geom(BS, ES, EC, 0);
  static struct churn m = {.seed = 15}, got;
  struct region *r;
  uint8_t back[BS];
  struct proto_ctx c;
  CHECK(region_create(dir, &d) == 0);
  snprintf(m.model_path, sizeof m.model_path, "%s.model", dir);
  child_dies(dir, churn_body, &m);
  FILE *f = fopen(m.model_path, "r");
  CHECK(f != NULL && fread(&got, sizeof got, 1, f) == 1);
  if (f)
    fclose(f);
  CHECK(region_open(dir, &r) == 0);
  uint32_t wrong = 0;
  for (uint32_t i = 0; i < ES; i++) {
    bool ok = region_read(r, ES + i, 1, &c, back) == 0 &&
              memcmp(back, got.data[i], BS) == 0 &&
              (got.version[i]
                   ? c.flags == PROTO_CTX_PRESENT && c.version == got.version[i]
                   : c.flags == 0);
    wrong += !ok;
  }
  CHECK(wrong == 0);
  region_close(r);
}

int main(void)
{
  static const struct region_test tests[] = {
      {"kill_before_fold", test_kill_before_fold},
      {"kill_after_record", test_kill_after_record},
      {"flush_voids", test_flush_voids},
      {"old_journal_void", test_old_journal_void},
      {"torn_record", test_torn_record},
      {"churn", test_churn}};
  return region_tests_run("test_region_jnl", tests,
                          sizeof tests / sizeof tests[0]);
}
