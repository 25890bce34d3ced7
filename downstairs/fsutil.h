/* crucible-c downstairs: the small file-system helpers the region,
 * snapshot and repair code share.  Paths are relative to a directory fd
 * (openat and friends), never to the process' working directory.
 */
#ifndef CRUCIBLE_FSUTIL_H
#define CRUCIBLE_FSUTIL_H

#include <stdbool.h>

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

#endif
