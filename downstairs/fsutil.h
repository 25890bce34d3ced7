/* crucible-c downstairs: the small file-system helpers the region,
 * snapshot and repair code share.  Paths are relative to a directory fd
 * (openat and friends), never to the process' working directory.
 */
#ifndef CRUCIBLE_FSUTIL_H
#define CRUCIBLE_FSUTIL_H

#include <stdbool.h>
#include <sys/types.h>

/* fsync rel under dfd (a file or, with O_DIRECTORY in flags, a
 * directory).  0 or -errno. */
int fs_fsync_at(int dfd, const char *rel, int flags);

/* Remove rel under dfd and everything below it (a file is unlinked;
 * links are not followed).  Absent: 0.  0 or -errno. */
int fs_rm_rf(int dfd, const char *rel);

/* Call fn(dirfd, name, arg) for each entry of directory rel under dfd
 * ("." for dfd itself; not a symlink) but "." and "..", until one returns non-zero,
 * which fs_dir_each returns (fn's dirfd is the open directory, good for
 * the *at calls on name).  0 when fn returned 0 for every entry; -errno
 * when the directory can't be opened, 0 for an absent one if missing_ok.
 * readdir need not return an entry the walk adds or removes. */
typedef int fs_dir_fn(int dirfd, const char *name, void *arg);
int fs_dir_each(int dfd, const char *rel, bool missing_ok, fs_dir_fn *fn,
                void *arg);

/* The write cache of the block device holding a filesystem (st_dev of a
 * file in it), as Linux reports it in
 * SYSROOT/dev/block/MAJ:MIN/queue/write_cache (a partition's from its
 * disk's queue): FS_WC_THROUGH when a completed write is durable,
 * FS_WC_BACK when the device may hold completed writes in a volatile
 * cache until a flush (and destage them in any order), FS_WC_UNKNOWN when
 * there is no such block device (tmpfs, overlay, NFS, btrfs' anonymous
 * devices) or the file can't be read.  sysroot is "/sys" but in tests. */
enum fs_wcache { FS_WC_UNKNOWN, FS_WC_BACK, FS_WC_THROUGH };
enum fs_wcache fs_write_cache(dev_t dev, const char *sysroot);

#endif
