/* Unit test for snapshots of a region (downstairs/snapshot.c,
 * region_snap.c): against a naive model (a flat array per snapshot, a
 * copy of the live array taken at create), a random stream of writes,
 * trims, flushes, creates, deletes and reopens reads back, from every
 * snapshot and from the live region, exactly what the model says; the
 * errors (bad or taken names, unknown snapshots, SNAP_MAX); a process
 * killed with SIGKILL at each crash point of create, of the copy before a
 * first write and of delete leaves a region whose snapshots and live data
 * are whole, old or new, with nothing half and no leftover; the default
 * geometry (4 KiB blocks, 128 MiB extents) copies only what was written
 * and only once; an extent added after a snapshot is not in it. */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../../common/geom.h"
#include "../../downstairs/snapshot.h"
#include "test_region.h"

/* --- the model ----------------------------------------------------------- */

struct mblk {
  uint64_t version; /* 0: zeroes */
  uint8_t data[BS];
};
struct mvol {
  struct mblk b[NBLK];
};
struct msnap {
  char name[16];
  struct mvol v;
};

static struct mvol live;
static struct msnap ms[8];
static unsigned nms;
static uint64_t version = 1;

static int model_write(struct region *r, uint64_t lba, uint32_t n, uint64_t *s)
{
  uint8_t buf[4 * BS];
  struct proto_ctx c[4];
  for (uint32_t i = 0; i < n; i++) {
    fill(buf + i * BS, BS, s);
    mkctx(&c[i], buf + i * BS, version);
  }
  int ret = region_write(r, lba, n, c, buf);
  if (ret == 0)
    for (uint32_t i = 0; i < n; i++) {
      live.b[lba + i].version = version;
      memcpy(live.b[lba + i].data, buf + i * BS, BS);
    }
  version++;
  return ret;
}

static int model_trim(struct region *r, uint64_t lba, uint32_t n)
{
  int ret = region_trim(r, lba, n, version++);
  if (ret == 0)
    for (uint32_t i = 0; i < n; i++)
      live.b[lba + i].version = 0;
  return ret;
}

/* Does every block of (name, or live when NULL) read as m says? */
static int check_vol(struct region *r, const char *name, const struct mvol *m)
{
  int bad = 0;
  for (uint64_t lba = 0; lba < NBLK; lba++) {
    struct proto_ctx c;
    uint8_t got[BS];
    int ret = name ? region_snapshot_read(r, name, lba, 1, &c, got)
                   : region_read(r, lba, 1, &c, got);
    const struct mblk *b = &m->b[lba];
    bool ok = ret == 0 && !(c.flags & PROTO_CTX_BAD) &&
              (b->version
                   ? (c.flags & PROTO_CTX_PRESENT) && c.version == b->version &&
                         memcmp(got, b->data, BS) == 0
                   : !(c.flags & PROTO_CTX_PRESENT) && all_zero(got, BS));
    if (!ok && bad++ == 0)
      fprintf(stderr,
              "%s: lba %llu: ret %d version %llu flags %u, model %llu\n",
              name ? name : "live", (unsigned long long) lba, ret,
              (unsigned long long) c.version, c.flags,
              (unsigned long long) b->version);
  }
  return bad;
}

static int check_all(struct region *r)
{
  int bad = check_vol(r, NULL, &live);
  for (unsigned i = 0; i < nms; i++)
    bad += check_vol(r, ms[i].name, &ms[i].v);
  return bad;
}

static void model_reset(void)
{
  memset(&live, 0, sizeof live);
  nms = 0;
}

/* --- tests ------------------------------------------------------------------ */

static void cb(const char *sn, uint32_t e, uint64_t b, void *a)
{
  (void) sn, (void) e, (void) b;
  (*(uint64_t *) a)++;
}

/* The random stream against the model. */
static void test_snap_model(void)
{
  const char *dir = newdir_fast();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint64_t s = 20261202, flush = 1;
  unsigned created = 0;
  model_reset();
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  for (int step = 0; step < 800; step++) {
    uint64_t k = rnd(&s) % 100;
    uint64_t lba = rnd(&s) % NBLK;
    uint32_t n = 1 + rnd(&s) % 4;
    if (n > ES - lba % ES)
      n = (uint32_t) (ES - lba % ES);
    if (k < 55) {
      CHECK(model_write(r, lba, n, &s) == 0);
    } else if (k < 65) {
      CHECK(model_trim(r, lba, n) == 0);
    } else if (k < 72) {
      CHECK(region_flush(r, flush++, 1) == 0);
    } else if (k < 80 && nms < 8) {
      struct msnap *m = &ms[nms++];
      snprintf(m->name, sizeof m->name, "s%u", created++);
      m->v = live;
      CHECK(region_snapshot_create(r, m->name, flush++, 1, 1000 + step) == 0);
    } else if (k < 86 && nms > 0) {
      unsigned i = (unsigned) (rnd(&s) % nms);
      CHECK(region_snapshot_delete(r, ms[i].name) == 0);
      memmove(&ms[i], &ms[i + 1], (nms - i - 1) * sizeof ms[0]);
      nms--;
    } else if (k < 89) {
      region_close(r);
      CHECK(region_open(dir, &r) == 0);
    }
    if (step % 200 == 199)
      CHECK(check_all(r) == 0);
  }
  CHECK(created >= 8);
  CHECK(check_all(r) == 0);
  unsigned n;
  struct region_snap_info info[SNAP_MAX];
  CHECK(region_snapshot_list(r, info, SNAP_MAX, &n) == 0 && n == nms);
  for (unsigned i = 0; i < n && i < nms; i++)
    CHECK(strcmp(info[i].name, ms[i].name) == 0);
  uint64_t bad = 0, checked = 0;
  CHECK(region_snapshot_verify(r, cb, &bad, &checked) == 0 && bad == 0);
  region_close(r);
}

static void test_snap_errors(void)
{
  const char *dir = newdir_fast();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  struct proto_ctx c;
  uint8_t got[BS];
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(region_snapshot_create(r, "", 1, 1, 0) == -EINVAL);
  CHECK(region_snapshot_create(r, "..hidden", 1, 1, 0) == -EINVAL);
  CHECK(region_snapshot_create(r, ".", 1, 1, 0) == -EINVAL);
  /* A rollback marker (plugin/rollback.c) is stored, and read back
   * across a reopen, like any snapshot. */
  CHECK(region_snapshot_create(r, ".mark", 1, 1, 0) == 0);
  region_close(r);
  CHECK(region_open(dir, &r) == 0);
  CHECK(region_snapshot_delete(r, ".mark") == 0);
  CHECK(region_snapshot_create(r, "a/b", 1, 1, 0) == -EINVAL);
  CHECK(region_snapshot_create(r, "with space", 1, 1, 0) == -EINVAL);
  char longname[80];
  memset(longname, 'x', sizeof longname);
  longname[SNAP_NAME_MAX + 1] = '\0';
  CHECK(region_snapshot_create(r, longname, 1, 1, 0) == -EINVAL);
  longname[SNAP_NAME_MAX] = '\0';
  CHECK(region_snapshot_create(r, longname, 1, 1, 0) == 0);
  CHECK(region_snapshot_create(r, longname, 2, 1, 0) == -EEXIST);
  CHECK(region_snapshot_delete(r, "nope") == -ENOENT);
  CHECK(region_snapshot_read(r, "nope", 0, 1, &c, got) == -ENOENT);
  CHECK(region_snapshot_read(r, longname, NBLK, 1, &c, got) == -EINVAL);
  for (unsigned i = 1; i < SNAP_MAX; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "n%u", i);
    CHECK(region_snapshot_create(r, nm, 2 + i, 1, 0) == 0);
  }
  CHECK(region_snapshot_create(r, "toomany", 100, 1, 0) == -ENOSPC);
  region_close(r);
  CHECK(region_open(dir, &r) == 0); /* all 64 read back */
  unsigned n;
  struct region_snap_info info[SNAP_MAX];
  CHECK(region_snapshot_list(r, info, SNAP_MAX, &n) == 0 && n == SNAP_MAX);
  CHECK(n > 0 && strcmp(info[0].name, longname) == 0 && info[0].flush == 1);
  region_close(r);
}

/* Fork; the child runs fn with the crash point set and must die of it. */
static void crash_at(int cp, const char *dir, void (*fn)(struct region *))
{
  pid_t pid = fork();
  if (pid == 0) {
    struct region *r;
    if (region_open(dir, &r) < 0)
      _exit(3);
    snap__crash_at = cp;
    fn(r);
    _exit(4); /* the crash point was not reached */
  }
  int st = 0;
  CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

static void do_create(struct region *r)
{
  region_snapshot_create(r, "c", 10, 1, 0);
}

static void do_write(struct region *r)
{
  uint64_t s = 99;
  model_write(r, 3, 2, &s); /* extent 0, first write after "a" */
}

static void do_delete(struct region *r)
{
  region_snapshot_delete(r, "b");
}

/* Nothing half: no SEQ.tmp, no eXXXXXXXX.tmp, no deleting marker. */
static int leftovers(const char *dir)
{
  char cmd[256];
  snprintf(cmd, sizeof cmd,
           "find '%s/snapshots' -name '*.tmp' -o -name deleting | grep -q .",
           dir);
  return system(cmd) == 0;
}

/* A region with data and snapshots a (older) and b: extent 0 changed
 * after a (its copy in a), extent 1 changed after b (its copy in b), so
 * deleting b hands b's extent-1 copy to a. */
static const char *crash_region(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint64_t s = 5;
  model_reset();
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(model_write(r, 1, 4, &s) == 0 && model_write(r, ES + 2, 3, &s) == 0);
  CHECK(region_snapshot_create(r, "a", 1, 1, 0) == 0);
  snprintf(ms[0].name, sizeof ms[0].name, "a");
  ms[0].v = live;
  CHECK(model_write(r, 0, 2, &s) == 0); /* copies extent 0 into a */
  CHECK(region_snapshot_create(r, "b", 2, 1, 0) == 0);
  snprintf(ms[1].name, sizeof ms[1].name, "b");
  ms[1].v = live;
  nms = 2;
  CHECK(model_write(r, ES + 2, 1, &s) == 0); /* extent 1 into b */
  CHECK(snap_has_copy(region_dirfd(r), 1, 0) == 1);
  CHECK(snap_has_copy(region_dirfd(r), 1, 1) == 0);
  CHECK(snap_has_copy(region_dirfd(r), 2, 1) == 1);
  CHECK(check_all(r) == 0);
  region_close(r);
  return dir;
}

static void test_snap_crash(void)
{
  static const struct {
    int cp;
    void (*fn)(struct region *);
    int outcome; /* 0 old, 1 new */
  } t[] = {
      {SNAP_CP_CREATE_INFO, do_create, 0},
      {SNAP_CP_CREATE_RENAMED, do_create, 1},
      {SNAP_CP_COPY_DATA, do_write, 0},
      {SNAP_CP_COPY_DB, do_write, 0},
      {SNAP_CP_COPY_RENAMED, do_write, 0},
      {SNAP_CP_DELETE_MARKED, do_delete, 1},
      {SNAP_CP_DELETE_HALF, do_delete, 1},
      {SNAP_CP_DELETE_INFO, do_delete, 1},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    const char *dir = crash_region();
    struct mvol before = live;
    crash_at(t[i].cp, dir, t[i].fn);
    struct region *r;
    CHECK(region_open(dir, &r) == 0);
    if (r == NULL)
      continue;
    CHECK(!leftovers(dir));
    unsigned n;
    struct region_snap_info info[SNAP_MAX];
    CHECK(region_snapshot_list(r, info, SNAP_MAX, &n) == 0);
    if (t[i].fn == do_create) {
      CHECK(n == 2u + (unsigned) t[i].outcome);
      if (t[i].outcome) {
        snprintf(ms[2].name, sizeof ms[2].name, "c");
        ms[2].v = live;
        nms = 3;
      }
    } else if (t[i].fn == do_write) {
      /* The write never ran: live is old, "b" holds the old extent 0
       * (from its copy or from live). */
      live = before;
      CHECK(n == 2);
    } else {
      CHECK(n == 1 && strcmp(info[0].name, "a") == 0);
      nms = 1; /* "a" keeps what it had, now partly from b's copy */
      CHECK(snap_has_copy(region_dirfd(r), 1, 1) == 1);
    }
    if (check_all(r) != 0) {
      fprintf(stderr, "crash point %d\n", t[i].cp);
      CHECK(0);
    }
    /* And the region goes on: the interrupted write is redone. */
    if (t[i].fn == do_write) {
      do_write(r);
      CHECK(check_all(r) == 0);
    }
    region_close(r);
  }
}

/* What users run: 4 KiB blocks, 128 MiB extents.  A snapshot copies an
 * extent once, at its first change, and only its allocated bytes. */
static void test_snap_default_geometry(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(4096, 32768, 3, 0);
  struct region *r;
  uint64_t s = 11;
  enum { N = 16 };
  static uint8_t a[N * 4096], b[N * 4096], got[N * 4096];
  struct proto_ctx c[N], rc[N];
  fill(a, sizeof a, &s);
  fill(b, sizeof b, &s);
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  for (int i = 0; i < N; i++) {
    memset(&c[i], 0, sizeof c[i]);
    c[i].version = 1;
    c[i].flags = PROTO_CTX_PRESENT;
    c[i].hash = crypt_hash_plain(a + i * 4096, 4096);
  }
  uint64_t lba = 32768 + 100; /* extent 1 */
  CHECK(region_write(r, lba, N, c, a) == 0);
  CHECK(region_snapshot_create(r, "base", 1, 1, 0) == 0);
  for (int i = 0; i < N; i++) {
    c[i].version = 2;
    c[i].hash = crypt_hash_plain(b + i * 4096, 4096);
  }
  /* The loop thread's path never copies: it hands the write over. */
  struct region_wr w = {.lba = lba, .n = N, .ctxs = c, .data = b};
  CHECK(region_write_group_now(r, &w, 1) == -EAGAIN);
  CHECK(region_write(r, lba, N, c, b) == 0);
  CHECK(region_write(r, lba, N, c, b) == 0);  /* no second copy */
  int now = region_write_group_now(r, &w, 1); /* may wait for other reasons */
  CHECK(now == -EAGAIN || (now == 0 && w.err == 0));
  CHECK(region_snapshot_read(r, "base", lba, N, rc, got) == 0);
  CHECK(memcmp(got, a, sizeof a) == 0 && rc[0].version == 1);
  CHECK(region_read(r, lba, N, rc, got) == 0);
  CHECK(memcmp(got, b, sizeof b) == 0 && rc[0].version == 2);
  CHECK(region_snapshot_read(r, "base", 5, 1, rc, got) == 0 &&
        !(rc[0].flags & PROTO_CTX_PRESENT) && all_zero(got, 4096));
  unsigned n;
  struct region_snap_info info[SNAP_MAX];
  CHECK(region_snapshot_list(r, info, SNAP_MAX, &n) == 0 && n == 1);
  CHECK(info[0].copies == 1);
  /* The copy is sparse: its 64 KiB of data, the database, directories;
   * far from the extent's 128 MiB. */
  CHECK(info[0].bytes >= N * 4096 && info[0].bytes < 4u << 20);
  /* A later extent is not in the snapshot. */
  CHECK(region_extend(r, 4) == 0);
  CHECK(region_write(r, 3 * 32768ull, 1, c, b) == 0);
  CHECK(region_snapshot_read(r, "base", 3 * 32768ull, 1, rc, got) == -EINVAL);
  CHECK(region_snapshot_list(r, info, SNAP_MAX, &n) == 0 &&
        info[0].copies == 1);
  region_close(r);
}

int main(void)
{
  static const struct region_test tests[] = {
      {"snap_model", test_snap_model},
      {"snap_errors", test_snap_errors},
      {"snap_crash", test_snap_crash},
      {"snap_default_geometry", test_snap_default_geometry}};
  return region_tests_run("test_snapshot", tests,
                          sizeof tests / sizeof tests[0]);
}
