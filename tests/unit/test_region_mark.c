/* Unit test: the repair mark (EXTENT_MARK; downstairs/extent.c, "THE
 * MARK").  A marked extent is dirty; a regular flush leaves it alone (no
 * cleanup of contexts, numbers unchanged, not reopened when evicted);
 * the mark survives close, reopen and a kill -9; only an extent flush
 * levels it and clears the mark, in memory and on disk.  Runs in a
 * mkdtemp directory. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include "../../common/geom.h"
#include "../../downstairs/extent.h"
#include "test_region.h"

/* Value of metadata row name of extent eid (region closed), -1 if the
 * row is missing, -2 if the database cannot be read. */
static long long meta_row(const char *dir, uint32_t eid, const char *name)
{
  char rel[EXT_PATH_MAX], p[256];
  sqlite3 *db;
  sqlite3_stmt *s;
  long long v = -2;
  ext_path(eid, rel);
  snprintf(p, sizeof p, "%s/%s.db", dir, rel);
  if (sqlite3_open(p, &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "SELECT value FROM metadata WHERE name=?", -1, &s,
                         NULL) == SQLITE_OK) {
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    v = rc == SQLITE_ROW    ? sqlite3_column_int64(s, 0)
        : rc == SQLITE_DONE ? -1
                            : -2;
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return v;
}

/* Extent eid's (gen, flush, dirty) through region_extent_states. */
static bool state_is(struct region *r, uint32_t eid, uint64_t gen,
                     uint64_t flush, uint8_t dirty)
{
  static struct proto_extent_state st[128];
  if (region_def(r)->extent_count > 128 || region_extent_states(r, st) < 0)
    return false;
  bool ok =
      st[eid].gen == gen && st[eid].flush == flush && st[eid].dirty == dirty;
  if (!ok)
    fprintf(stderr,
            "extent %u: gen %llu flush %llu dirty %u, want %llu "
            "%llu %u\n",
            eid, (unsigned long long) st[eid].gen,
            (unsigned long long) st[eid].flush, st[eid].dirty,
            (unsigned long long) gen, (unsigned long long) flush, dirty);
  return ok;
}

/* The whole life of a mark: mark -> write -> FLUSH leaves it dirty with
 * the old numbers and its contexts uncleaned -> close/reopen: still
 * marked -> extent flush levels it and clears the mark -> a later write
 * + FLUSH levels it as usual, before and after a reopen. */
static void test_mark_life(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint32_t n;
  uint64_t s = 11;
  uint8_t x[BS], y[BS], back[BS];
  struct proto_ctx rc;
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(write1(r, 1, 1, NULL, &s) == 0 && write1(r, ES + 1, 2, x, &s) == 0);
  CHECK(region_flush(r, 1, 1) == 0);
  CHECK(state_is(r, 0, 1, 1, 0) && state_is(r, 1, 1, 1, 0));

  CHECK(region_extent_mark(r, 1) == 0);
  CHECK(region_extent_mark(r, 1) == 0); /* again: a no-op */
  CHECK(state_is(r, 1, 1, 1, 1));       /* EXTENT_STATES: dirty */
  CHECK(write1(r, 1, 3, NULL, &s) == 0 && write1(r, ES + 1, 4, y, &s) == 0);
  CHECK(region_flush_n(r, 2, 1, &n) == 0 && n == 1);
  CHECK(state_is(r, 0, 1, 2, 0) && state_is(r, 1, 1, 1, 1));
  CHECK(region_read(r, ES + 1, 1, &rc, back) == 0 && rc.version == 4 &&
        memcmp(back, y, BS) == 0);
  region_close(r);
  /* Not cleaned by that flush: x's context and y's are both there. */
  CHECK(count_rows(dir, "00/000/001", 1) == 2);
  CHECK(count_rows(dir, "00/000/000", 1) == 1);
  CHECK(meta_row(dir, 1, "repair") == 1 && meta_row(dir, 1, "dirty") == 1 &&
        meta_row(dir, 1, "flush_number") == 1);
  CHECK(meta_row(dir, 0, "repair") == -1); /* never marked: no row */

  /* Reopened: still marked (rehashed as any dirty extent). */
  CHECK(region_open(dir, &r) == 0);
  CHECK(state_is(r, 1, 1, 1, 1));
  CHECK(write1(r, ES + 2, 5, NULL, &s) == 0);
  CHECK(region_flush_n(r, 3, 1, &n) == 0 && n == 0);
  CHECK(state_is(r, 1, 1, 1, 1));
  CHECK(region_read(r, ES + 1, 1, &rc, back) == 0 && rc.version == 4 &&
        memcmp(back, y, BS) == 0);

  /* EXTENT_FLUSH levels it and clears the mark ... */
  CHECK(region_extent_flush(r, 1, 4, 1) == 0);
  CHECK(state_is(r, 1, 1, 4, 0));
  /* ... in memory: the next write + FLUSH levels it ... */
  CHECK(write1(r, ES + 3, 6, NULL, &s) == 0);
  CHECK(region_flush_n(r, 5, 1, &n) == 0 && n == 1);
  CHECK(state_is(r, 1, 1, 5, 0));
  region_close(r);
  CHECK(count_rows(dir, "00/000/001", 1) == 1);
  CHECK(meta_row(dir, 1, "repair") == 0 && meta_row(dir, 1, "dirty") == 0);
  /* ... and on disk: after a reopen too. */
  CHECK(region_open(dir, &r) == 0);
  CHECK(state_is(r, 1, 1, 5, 0));
  CHECK(write1(r, ES + 4, 7, NULL, &s) == 0);
  CHECK(region_flush_n(r, 6, 1, &n) == 0 && n == 1);
  CHECK(state_is(r, 1, 1, 6, 0));
  /* Outside the region. */
  CHECK(region_extent_mark(r, EC) == -EINVAL);
  region_close(r);
}

/* A never-written extent can be marked: dirty, zeroes, FLUSH skips it,
 * the mark is kept by a close without flush; EXTENT_FLUSH levels it. */
static void test_mark_unwritten(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint8_t back[BS];
  struct proto_ctx rc;
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(region_extent_mark(r, 2) == 0);
  CHECK(state_is(r, 2, 0, 0, 1));
  CHECK(region_flush(r, 1, 1) == 0);
  CHECK(state_is(r, 2, 0, 0, 1));
  CHECK(region_read(r, 2 * ES + 5, 1, &rc, back) == 0 && rc.flags == 0 &&
        all_zero(back, BS));
  region_close(r);
  CHECK(meta_row(dir, 2, "repair") == 1);
  CHECK(region_open(dir, &r) == 0);
  CHECK(state_is(r, 2, 0, 0, 1));
  CHECK(region_flush(r, 2, 1) == 0);
  CHECK(state_is(r, 2, 0, 0, 1));
  CHECK(region_extent_flush(r, 2, 3, 1) == 0);
  CHECK(state_is(r, 2, 1, 3, 0));
  region_close(r);
  CHECK(meta_row(dir, 2, "repair") == 0);
}

/* kill -9 after a mark, a write and a (skipping) FLUSH: nothing closed,
 * the WAL not checkpointed.  The reopened region still has the extent
 * marked and dirty with its old numbers, the write readable. */
static void test_mark_kill(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint64_t s = 21;
  uint8_t y[BS], back[BS];
  struct proto_ctx rc;
  CHECK(region_create(dir, &d) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    if (region_open(dir, &r) < 0 || write1(r, 3, 1, NULL, &s) < 0 ||
        region_flush(r, 1, 1) < 0 || region_extent_mark(r, 0) < 0 ||
        write1(r, 3, 2, y, &s) < 0 || region_flush(r, 2, 1) < 0)
      _exit(3);
    raise(SIGKILL);
    _exit(4);
  }
  int status;
  CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) &&
        WTERMSIG(status) == SIGKILL);
  s = 21; /* the child's stream: the same bytes */
  uint8_t first[BS];
  fill(first, BS, &s);
  fill(y, BS, &s);
  CHECK(region_open(dir, &r) == 0);
  CHECK(state_is(r, 0, 1, 1, 1));
  CHECK(region_flush(r, 3, 1) == 0);
  CHECK(state_is(r, 0, 1, 1, 1));
  CHECK(region_read(r, 3, 1, &rc, back) == 0 && rc.version == 2 &&
        memcmp(back, y, BS) == 0);
  uint64_t bad = 0, checked = 0;
  CHECK(region_verify_extent(r, 0, count_bad, &bad, &checked) == 0 &&
        bad == 0 && checked == 1);
  CHECK(region_extent_flush(r, 0, 4, 1) == 0);
  CHECK(state_is(r, 0, 1, 4, 0));
  region_close(r);
}

/* A marked extent evicted from the open set is not reopened by FLUSH
 * (that would rehash it at every flush), and FLUSH still reaches the
 * other evicted dirty extents.  66 extents of 2 blocks are written, the
 * marked one first: it and extent 1 are the two evicted. */
static void test_mark_evicted(void)
{
  const char *dir = newdir_fast();
  uint32_t ec = 70, nw = REGION_MAX_OPEN_EXTENTS + 2;
  struct proto_region d = geom(BS, 2, ec, 0);
  struct region *r;
  uint32_t n;
  uint64_t s = 31;
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(region_extent_mark(r, 0) == 0);
  for (uint32_t e = 0; e < nw; e++)
    CHECK(write1(r, e * 2, e + 1, NULL, &s) == 0);
  CHECK(!region_extent_is_open(r, 0) && !region_extent_is_open(r, 1));
  CHECK(region_extent_is_open(r, nw - 1));
  CHECK(region_flush_n(r, 1, 1, &n) == 0 && n == nw - 1);
  CHECK(!region_extent_is_open(r, 0)); /* not reopened */
  CHECK(region_extent_is_open(r, 1));  /* reopened and flushed */
  static struct proto_extent_state st[70];
  CHECK(region_extent_states(r, st) == 0);
  CHECK(st[0].dirty == 1 && st[0].flush == 0);
  for (uint32_t e = 1; e < ec; e++)
    CHECK(st[e].dirty == 0 && st[e].flush == (e < nw ? 1u : 0u));
  CHECK(!region_extent_is_open(r, 0));
  CHECK(region_flush_n(r, 2, 1, &n) == 0 && n == 0);
  CHECK(!region_extent_is_open(r, 0));
  /* EXTENT_FLUSH opens it (rehash) and levels it. */
  CHECK(region_extent_flush(r, 0, 3, 1) == 0);
  CHECK(region_extent_is_open(r, 0) && state_is(r, 0, 1, 3, 0));
  uint64_t bad = 0, checked = 0;
  CHECK(region_verify_extent(r, 0, count_bad, &bad, &checked) == 0 &&
        bad == 0 && checked == 1);
  region_close(r);
}

/* The same defence one level down, on an extent opened alone: ext_flush
 * (always false) of a marked extent does nothing (numbers, dirty, every
 * context), ext_flush (always) levels it and clears the mark. */
static void test_mark_ext(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  uint64_t s = 41;
  CHECK(region_create(dir, &d) == 0);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
  uint8_t zero[BS] = {0}, b[2][BS];
  struct ext e = {.eid = 3, .block_size = BS, .extent_size = ES, .fd = -1};
  e.zero_hash = crypt_hash_plain(zero, BS);
  CHECK(dirfd >= 0 && ext_open(&e, dirfd, dir) == 0);
  CHECK(!e.repair && !e.meta.dirty);
  CHECK(ext_mark(&e) == 0 && e.repair && e.meta.dirty);
  for (int i = 0; i < 2; i++) { /* block 7 twice: three rows */
    struct proto_ctx c;
    fill(b[i], BS, &s);
    mkctx(&c, b[i], (uint64_t) i + 1);
    uint64_t odh = crypt_hash_plain(b[i], BS);
    CHECK(ext_write(&e, 7, 1, &c, &odh, b[i]) == 0);
  }
  CHECK(ext_flush(&e, 5, 1, false) == 0);
  CHECK(e.repair && e.meta.dirty && e.meta.flush == 0 && e.meta.gen == 0);
  ext_close(&e);
  CHECK(count_rows(dir, "00/000/003", 7) == 3);
  CHECK(meta_row(dir, 3, "flush_number") == 0 &&
        meta_row(dir, 3, "dirty") == 1 && meta_row(dir, 3, "repair") == 1);
  struct proto_extent_state st;
  bool rep = false;
  CHECK(ext_read_meta(dir, 3, true, &st, &rep) == 0 && rep && st.dirty);
  CHECK(ext_open(&e, dirfd, dir) == 0 && e.repair);
  CHECK(ext_flush(&e, 6, 1, false) == 0 && e.meta.flush == 0);
  CHECK(ext_flush(&e, 7, 2, true) == 0);
  CHECK(!e.repair && !e.meta.dirty && e.meta.flush == 7 && e.meta.gen == 2);
  ext_close(&e);
  CHECK(count_rows(dir, "00/000/003", 7) == 1);
  CHECK(ext_read_meta(dir, 3, true, &st, &rep) == 0 && !rep && !st.dirty &&
        st.flush == 7);
  close(dirfd);
}

/* A database edited to say repair=1 but dirty=0 (no path of ours
 * writes that) still reads as a marked, dirty extent. */
static void test_mark_hand_edited(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  char p[256];
  sqlite3 *db;
  CHECK(region_create(dir, &d) == 0);
  snprintf(p, sizeof p, "%s/00/000/001.db", dir);
  CHECK(sqlite3_open(p, &db) == SQLITE_OK);
  CHECK(sqlite3_exec(db, "INSERT INTO metadata VALUES('repair', 1);", NULL,
                     NULL, NULL) == SQLITE_OK);
  sqlite3_close(db);
  CHECK(meta_row(dir, 1, "dirty") == 0);
  CHECK(region_open(dir, &r) == 0);
  CHECK(state_is(r, 1, 0, 0, 1));
  CHECK(region_flush(r, 1, 1) == 0 && state_is(r, 1, 0, 0, 1));
  CHECK(region_extent_flush(r, 1, 2, 1) == 0 && state_is(r, 1, 1, 2, 0));
  region_close(r);
  CHECK(meta_row(dir, 1, "repair") == 0);
}

int main(void)
{
  static const struct region_test tests[] = {
      {"mark_life", test_mark_life},
      {"mark_unwritten", test_mark_unwritten},
      {"mark_kill", test_mark_kill},
      {"mark_evicted", test_mark_evicted},
      {"mark_ext", test_mark_ext},
      {"mark_hand_edited", test_mark_hand_edited}};
  return region_tests_run("test_region_mark", tests,
                          sizeof tests / sizeof tests[0]);
}
