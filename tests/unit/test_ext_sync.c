/* ext_flush's ONE SYNC (downstairs/extent.c): on ext2/3/4, a flush after
 * writes that only overwrote blocks allocated and synced before takes
 * sync_file_range + the WAL's sync; after an open, a fallocate (a block
 * first written in this open) or a punch (trim) it takes the full
 * fdatasync.  Elsewhere (tmpfs, XFS, btrfs: copy-on-write or unknown) it
 * always takes the fdatasync.  Every flush leaves the bytes and exactly
 * one row per written block, whichever way it went. */
#include <linux/magic.h>
#include <sys/vfs.h>

#include "../../downstairs/extent.h"
#include "test_region.h"

static int write_blk(struct ext *e, uint64_t blk, uint8_t *b, uint64_t *s,
                     uint64_t version)
{
  struct proto_ctx c;
  fill(b, BS, s);
  mkctx(&c, b, version);
  uint64_t odh = crypt_hash_plain(b, BS);
  return ext_write(e, blk, 1, &c, &odh, b);
}

static bool reads_back(struct ext *e, uint64_t blk, const uint8_t *want)
{
  uint8_t got[BS];
  struct proto_ctx c;
  return ext_read(e, blk, 1, &c, got) == 0 && memcmp(got, want, BS) == 0;
}

static void test_one_sync(void)
{
  const char *dir = newdir();
  struct proto_region d = geom(BS, ES, EC, 0);
  uint64_t s = 7;
  CHECK(region_create(dir, &d) == 0);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
  struct statfs sf;
  CHECK(dirfd >= 0 && fstatfs(dirfd, &sf) == 0);
  bool ext4 = sf.f_type == EXT4_SUPER_MAGIC;
  uint8_t zero[BS] = {0}, b7[BS], b8[BS];
  struct ext e = {.eid = 2, .block_size = BS, .extent_size = ES, .fd = -1};
  e.zero_hash = crypt_hash_plain(zero, BS);
  CHECK(ext_open(&e, dirfd, dir) == 0 && e.inplace == ext4);
  uint32_t want = 0;
  uint64_t fl = 1;

  /* First write of block 7 in this open: fallocate, the full sync. */
  CHECK(write_blk(&e, 7, b7, &s, 1) == 0 && ext_flush(&e, fl++, 1, false) == 0);
  CHECK(e.flushes_one_sync == want && reads_back(&e, 7, b7));
  /* Block 7 again: in place. */
  CHECK(write_blk(&e, 7, b7, &s, 2) == 0 && ext_flush(&e, fl++, 1, false) == 0);
  want += ext4;
  CHECK(e.flushes_one_sync == want && reads_back(&e, 7, b7));
  /* Block 8, new in this open (fallocate), beside 7 again: full. */
  CHECK(write_blk(&e, 7, b7, &s, 3) == 0 && write_blk(&e, 8, b8, &s, 1) == 0);
  CHECK(ext_flush(&e, fl++, 1, false) == 0 && e.flushes_one_sync == want);
  CHECK(reads_back(&e, 7, b7) && reads_back(&e, 8, b8));
  /* A trim punches 7: full; the next write of 7 reallocates: full. */
  CHECK(ext_trim(&e, 7, 1, 4) == 0 && ext_flush(&e, fl++, 1, false) == 0);
  CHECK(e.flushes_one_sync == want && reads_back(&e, 7, zero));
  CHECK(write_blk(&e, 7, b7, &s, 5) == 0 && ext_flush(&e, fl++, 1, false) == 0);
  CHECK(e.flushes_one_sync == want);
  /* Both overwritten: in place again. */
  CHECK(write_blk(&e, 7, b7, &s, 6) == 0 && write_blk(&e, 8, b8, &s, 2) == 0);
  CHECK(ext_flush(&e, fl++, 1, false) == 0);
  want += ext4;
  CHECK(e.flushes_one_sync == want);
  /* A clean extent's EXTENT_FLUSH (always) has no row change of its own
   * to sync the WAL: full. */
  CHECK(ext_flush(&e, fl++, 2, true) == 0 && e.flushes_one_sync == want);
  ext_close(&e);
  CHECK(count_rows(dir, "00/000/002", 7) == 1 &&
        count_rows(dir, "00/000/002", 8) == 1);
  /* Reopened: everything may have changed under us, so full first. */
  CHECK(ext_open(&e, dirfd, dir) == 0 && !e.meta.dirty);
  CHECK(reads_back(&e, 7, b7) && reads_back(&e, 8, b8));
  CHECK(write_blk(&e, 7, b7, &s, 7) == 0 && ext_flush(&e, fl++, 2, false) == 0);
  CHECK(e.flushes_one_sync == 0 && reads_back(&e, 7, b7));
  ext_close(&e);
  close(dirfd);
  printf("  filesystem %s: %u of %llu flushes in place\n",
         ext4 ? "ext2/3/4" : "not ext", want, (unsigned long long) fl - 1);
}

int main(void)
{
  static const struct region_test tests[] = {{"one_sync", test_one_sync}};
  return region_tests_run("test_ext_sync", tests,
                          sizeof tests / sizeof tests[0]);
}
