/* ext_flush's ONE SYNC (downstairs/extent.c): on ext2/3/4 on a device
 * whose write cache is write-through, a flush after writes that only
 * overwrote blocks allocated and synced before takes sync_file_range +
 * the WAL's sync; after an open, a fallocate (a block first written in
 * this open) or a punch (trim) it takes the full fdatasync.  Elsewhere
 * (a write-back cache, as on most disks and virtio; tmpfs, XFS, btrfs:
 * copy-on-write or unknown) it always takes the fdatasync.  Every flush
 * leaves the bytes and exactly one row per written block, whichever way
 * it went.  fs_write_cache reads the device's setting from sysfs. */
#include <errno.h>
#include <limits.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>

#include "../../downstairs/extent.h"
#include "../../downstairs/fsutil.h"
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
  struct stat st;
  CHECK(fstat(dirfd, &st) == 0);
  bool wt = fs_write_cache(st.st_dev, "/sys") == FS_WC_THROUGH;
  uint8_t zero[BS] = {0}, b7[BS], b8[BS];
  struct ext e = {.eid = 2, .block_size = BS, .extent_size = ES, .fd = -1};
  e.zero_hash = crypt_hash_plain(zero, BS);
  /* Allowed only on ext4 with a write-through cache; then driven as on
   * one (the rest of this test), whatever this machine's disk is. */
  CHECK(ext_open(&e, dirfd, dir) == 0 && e.one_sync == (ext4 && wt));
  e.one_sync = ext4;
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
  CHECK(e.one_sync == (ext4 && wt));
  e.one_sync = ext4;
  CHECK(reads_back(&e, 7, b7) && reads_back(&e, 8, b8));
  CHECK(write_blk(&e, 7, b7, &s, 7) == 0 && ext_flush(&e, fl++, 2, false) == 0);
  CHECK(e.flushes_one_sync == 0 && reads_back(&e, 7, b7));
  ext_close(&e);
  close(dirfd);
  printf("  filesystem %s, write cache %s: %u of %llu flushes in place "
         "as on write-through\n",
         ext4 ? "ext2/3/4" : "not ext",
         wt ? "write through" : "not write through", want,
         (unsigned long long) fl - 1);
}

static void put(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  CHECK(f != NULL && fputs(text, f) >= 0 && fclose(f) == 0);
}

/* A fake sysfs: a disk (8:0, write back) with a partition (8:1, no queue
 * of its own: its disk's), a write-through disk (9:0), a device with no
 * block entry (0:45, as tmpfs or btrfs), one with an unknown value. */
static void test_write_cache(void)
{
  char root[PATH_MAX], p[PATH_MAX + 64];
  snprintf(root, sizeof root, "%s", newdir());
  CHECK(mkdir(root, 0755) == 0 || errno == EEXIST);
  static const char *const dirs[] = {"dev",
                                     "dev/block",
                                     "devices",
                                     "devices/sda",
                                     "devices/sda/queue",
                                     "devices/sda/sda1",
                                     "devices/vdb",
                                     "devices/vdb/queue",
                                     "devices/x",
                                     "devices/x/queue"};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
    CHECK(mkdir(p, 0755) == 0);
  }
  snprintf(p, sizeof p, "%s/devices/sda/queue/write_cache", root);
  put(p, "write back\n");
  snprintf(p, sizeof p, "%s/devices/vdb/queue/write_cache", root);
  put(p, "write through\n");
  snprintf(p, sizeof p, "%s/devices/x/queue/write_cache", root);
  put(p, "write around\n");
  static const char *const links[][2] = {{"../../devices/sda", "8:0"},
                                         {"../../devices/sda/sda1", "8:1"},
                                         {"../../devices/vdb", "9:0"},
                                         {"../../devices/x", "9:1"}};
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
    snprintf(p, sizeof p, "%s/dev/block/%s", root, links[i][1]);
    CHECK(symlink(links[i][0], p) == 0);
  }
  CHECK(fs_write_cache(makedev(8, 0), root) == FS_WC_BACK);
  CHECK(fs_write_cache(makedev(8, 1), root) == FS_WC_BACK);
  CHECK(fs_write_cache(makedev(9, 0), root) == FS_WC_THROUGH);
  CHECK(fs_write_cache(makedev(9, 1), root) == FS_WC_UNKNOWN);
  CHECK(fs_write_cache(makedev(0, 45), root) == FS_WC_UNKNOWN);
  CHECK(fs_write_cache(makedev(9, 0), "/nonexistent") == FS_WC_UNKNOWN);
}

int main(void)
{
  static const struct region_test tests[] = {{"one_sync", test_one_sync},
                                             {"write_cache", test_write_cache}};
  return region_tests_run("test_ext_sync", tests,
                          sizeof tests / sizeof tests[0]);
}
