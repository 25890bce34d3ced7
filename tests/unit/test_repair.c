/* Unit test: downstairs/repair.c's ds_repair_recover, run by region_open:
 * what an interrupted file-copy repair (protocol version 2) left in a
 * region.  A committed copy (ZZZ.replace/) is finished, also when some of
 * its files were already moved, and the old database's -wal never
 * replays onto the new one; an uncommitted copy (ZZZ.copy/) and a
 * retired one (ZZZ.completed/) are deleted.  Runs in a mkdtemp
 * directory. */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test_region.h"

/* Copy file src to dst (created or truncated); 0 or -1. */
static int copy_file(const char *src, const char *dst)
{
  uint8_t buf[65536];
  int in = open(src, O_RDONLY), out = -1, r = in < 0 ? -1 : 0;
  if (r == 0)
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out < 0)
    r = -1;
  ssize_t n;
  while (r == 0 && (n = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t) n) != n)
      r = -1;
  if (in >= 0)
    close(in);
  if (out >= 0 && close(out) < 0)
    r = -1;
  return r;
}

static bool exists(const char *dir, const char *rel)
{
  char p[256];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  return stat(p, &st) == 0;
}

static void mkdir_in(const char *dir, const char *rel)
{
  char p[256];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  CHECK(mkdir(p, 0755) == 0);
}

/* Copy dir/from to dir/to. */
static void cp_in(const char *dir, const char *from, const char *to)
{
  char a[256], b[256];
  snprintf(a, sizeof a, "%s/%s", dir, from);
  snprintf(b, sizeof b, "%s/%s", dir, to);
  CHECK(copy_file(a, b) == 0);
}

/* Block lba reads version v with bytes want. */
static bool reads(struct region *r, uint64_t lba, uint64_t v,
                  const uint8_t *want)
{
  uint8_t back[BS];
  struct proto_ctx rc;
  return region_read(r, lba, 1, &rc, back) == 0 && rc.version == v &&
         memcmp(back, want, BS) == 0;
}

static void test_recover(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  struct region *r;
  uint64_t s = 3;
  uint8_t a[EC][BS], b[EC][BS];
  struct proto_extent_state st[EC];
  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  for (uint32_t e = 0; e < EC; e++)
    CHECK(write1(r, e * ES + 2, 1, a[e], &s) == 0);
  CHECK(region_flush(r, 1, 1) == 0);
  region_close(r); /* databases checkpointed: the files are whole */
  /* The "source's copies" (version 1) of extents 0 and 1, kept beside
   * the region until it has moved on to version 2. */
  cp_in(dir, "00/000/000", "../side-000");
  cp_in(dir, "00/000/000.db", "../side-000.db");
  cp_in(dir, "00/000/001.db", "../side-001.db");
  /* Version 2, then kill -9: every database keeps its -wal, whose
   * commits (version 2's contexts, flush 2) are not checkpointed. */
  uint64_t s2 = s;
  pid_t pid = fork();
  if (pid == 0) {
    if (region_open(dir, &r) < 0)
      _exit(3);
    for (uint32_t e = 0; e < EC; e++)
      if (write1(r, e * ES + 2, 2, b[e], &s2) < 0)
        _exit(4);
    if (region_flush(r, 2, 1) < 0)
      _exit(5);
    raise(SIGKILL);
  }
  int status;
  CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
  for (uint32_t e = 0; e < EC; e++)
    fill(b[e], BS, &s); /* the child's stream: its bytes */
  CHECK(exists(dir, "00/000/000.db-wal"));
  mkdir_in(dir, "00/000/000.replace");
  mkdir_in(dir, "00/000/001.replace");
  cp_in(dir, "../side-000", "00/000/000.replace/000");
  cp_in(dir, "../side-000.db", "00/000/000.replace/000.db");
  cp_in(dir, "../side-001.db", "00/000/001.replace/001.db");
  /* Extent 1: its data file was already moved (the version-1 bytes)
   * when the repair was interrupted; only the database is left. */
  char p[256];
  snprintf(p, sizeof p, "%s/00/000/001", dir);
  int fd = open(p, O_WRONLY);
  CHECK(fd >= 0 && pwrite(fd, a[1], BS, 2 * BS) == BS);
  if (fd >= 0)
    close(fd);
  /* Extents 0 and 1: the old database's -wal is still there; it must
   * not replay onto the new one. */
  /* Extent 2: a copy that never committed; extent 3: a retired one. */
  mkdir_in(dir, "00/000/002.copy");
  cp_in(dir, "00/000/001.db", "00/000/002.copy/002.db");
  mkdir_in(dir, "00/000/003.completed");
  cp_in(dir, "00/000/001.db", "00/000/003.completed/003.db");

  CHECK(region_open(dir, &r) == 0);
  CHECK(!exists(dir, "00/000/000.replace") &&
        !exists(dir, "00/000/001.replace") &&
        !exists(dir, "00/000/000.completed") &&
        !exists(dir, "00/000/002.copy") &&
        !exists(dir, "00/000/003.completed"));
  CHECK(!exists(dir, "00/000/000.db-wal"));
  CHECK(region_extent_states(r, st) == 0);
  CHECK(st[0].flush == 1 && st[1].flush == 1 && !st[0].dirty && !st[1].dirty);
  CHECK(st[2].flush == 2 && st[3].flush == 2);
  CHECK(reads(r, 2, 1, a[0]) && reads(r, ES + 2, 1, a[1]));
  CHECK(reads(r, 2 * ES + 2, 2, b[2]) && reads(r, 3 * ES + 2, 2, b[3]));
  uint64_t bad = 0, checked;
  for (uint32_t e = 0; e < EC; e++)
    CHECK(region_verify_extent(r, e, count_bad, &bad, &checked) == 0 &&
          checked == 1);
  CHECK(bad == 0);
  region_close(r);
  /* Idempotent: nothing left to do the next time. */
  CHECK(region_open(dir, &r) == 0 && reads(r, 2, 1, a[0]));
  region_close(r);
}

int main(void)
{
  static const struct region_test tests[] = {{"recover", test_recover}};
  return region_tests_run("test_repair", tests, sizeof tests / sizeof tests[0]);
}
