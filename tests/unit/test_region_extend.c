/* Unit test for region_extend (downstairs/region.c): a region grows by
 * whole extents while open; the old data stays, the new extents read as
 * zeroes and take writes; the count is persisted (region.json is the
 * commit point: reopened, the region has the new size); a shrink or an
 * impossible geometry is refused and changes nothing; the files a crashed
 * extend left (extent files beyond the count, even a database with rows)
 * are replaced, never adopted. */
#include <errno.h>
#include <sys/stat.h>

#include "../../common/geom.h"
#include "../../downstairs/extent.h"
#include "test_region.h"

/* A block read back: its bytes and whether it holds a context. */
static int read1(struct region *r, uint64_t lba, uint8_t *out, bool *present)
{
  struct proto_ctx c;
  int ret = region_read(r, lba, 1, &c, out);
  if (present)
    *present = (c.flags & PROTO_CTX_PRESENT) != 0;
  return ret;
}

static void test_extend_grow(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, 2, 0);
  struct region *r;
  uint64_t s = 42;
  uint8_t a[BS], b[BS], got[BS];
  bool present;

  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(write1(r, ES + 3, 1, a, &s) == 0); /* extent 1 */
  CHECK(region_extend(r, 1) == -EINVAL);   /* shrink */
  CHECK(region_extend(r, 2) == 0);         /* same size: nothing to do */
  CHECK(region_extend(r, 5) == 0);
  CHECK(region_def(r)->extent_count == 5);
  CHECK(read1(r, ES + 3, got, NULL) == 0 && memcmp(got, a, BS) == 0);
  CHECK(read1(r, 4 * ES + 7, got, &present) == 0 && all_zero(got, BS) &&
        !present);
  CHECK(write1(r, 4 * ES + 7, 2, b, &s) == 0);
  CHECK(region_flush(r, 1, 1) == 0);
  region_close(r);

  CHECK(region_open(dir, &r) == 0);
  CHECK(region_def(r)->extent_count == 5);
  CHECK(read1(r, ES + 3, got, NULL) == 0 && memcmp(got, a, BS) == 0);
  CHECK(read1(r, 4 * ES + 7, got, &present) == 0 && memcmp(got, b, BS) == 0 &&
        present);
  region_close(r);
}

/* An extend that crashed after creating files but before region.json:
 * the region keeps its old count, and the next extend replaces those
 * files (here: a data file of the wrong size and a database that holds a
 * written block's context, which must not reappear). */
static void test_extend_leftovers(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, 2, 0);
  struct region *r, *r2;
  uint64_t s = 7;
  uint8_t got[BS];
  bool present;
  char rel[EXT_PATH_MAX], from[256], to[256];

  /* A donor region whose extent 0 has a written block. */
  const char *donor = newdir();
  struct proto_region dd = geom(BS, ES, 1, 0);
  CHECK(region_create(donor, &dd) == 0 && region_open(donor, &r2) == 0);
  CHECK(write1(r2, 5, 3, NULL, &s) == 0 && region_flush(r2, 1, 1) == 0);
  region_close(r2);

  CHECK(region_create(dir, &d) == 0);
  /* Plant extent 2's files: the donor's database, a short data file. */
  ext_path(2, rel);
  snprintf(to, sizeof to, "%s/%.2s", dir, rel);
  CHECK(mkdir(to, 0755) == 0 || errno == EEXIST);
  snprintf(to, sizeof to, "%s/%.6s", dir, rel);
  CHECK(mkdir(to, 0755) == 0 || errno == EEXIST);
  ext_path(0, from);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "cp %s/%s.db %s/%s.db && echo x > %s/%s", donor,
           from, dir, rel, dir, rel);
  CHECK(system(cmd) == 0);

  CHECK(region_open(dir, &r) == 0);
  CHECK(region_def(r)->extent_count == 2); /* not adopted */
  CHECK(region_extend(r, 3) == 0);
  CHECK(read1(r, 2 * ES + 5, got, &present) == 0 && all_zero(got, BS) &&
        !present);
  struct stat st;
  snprintf(to, sizeof to, "%s/%s", dir, rel);
  CHECK(stat(to, &st) == 0 && (uint64_t) st.st_size == ES * BS);
  region_close(r);
}

/* A geometry the region cannot have is refused before anything is made. */
static void test_extend_refused(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, 2, 0);
  struct region *r;
  char rel[EXT_PATH_MAX], p[256];

  CHECK(region_create(dir, &d) == 0 && region_open(dir, &r) == 0);
  CHECK(region_extend(r, 0) == -EINVAL);
  CHECK(region_def(r)->extent_count == 2);
  ext_path(2, rel);
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  CHECK(access(p, F_OK) < 0); /* nothing was created */
  region_close(r);
}

int main(void)
{
  static const struct region_test tests[] = {
      {"extend_grow", test_extend_grow},
      {"extend_leftovers", test_extend_leftovers},
      {"extend_refused", test_extend_refused}};
  return region_tests_run("test_region_extend", tests,
                          sizeof tests / sizeof tests[0]);
}
