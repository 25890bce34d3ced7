/* crucible-c downstairs: shared file-system helpers (see fsutil.h). */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int fs_fsync_at(int dfd, const char *rel, int flags)
{
  int fd = openat(dfd, rel, flags | O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int r = fsync(fd) < 0 ? -errno : 0;
  close(fd);
  return r;
}

/* fs_dir_each on the open directory fd (closed here). */
static int dir_each_fd(int fd, fs_dir_fn *fn, void *arg)
{
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    int r = -errno;
    close(fd);
    return r;
  }
  struct dirent *de;
  int r = 0;
  while (r == 0 && (de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
      r = fn(fd, de->d_name, arg);
  closedir(d);
  return r;
}

int fs_dir_each(int dfd, const char *rel, bool missing_ok, fs_dir_fn *fn,
                void *arg)
{
  int fd = openat(dfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return missing_ok && errno == ENOENT ? 0 : -errno;
  return dir_each_fd(fd, fn, arg);
}

static int rm_entry(int dirfd, const char *name, void *arg)
{
  (void) arg;
  return fs_rm_rf(dirfd, name);
}

int fs_rm_rf(int dfd, const char *rel)
{
  int fd = openat(dfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return 0;
    if (errno != ENOTDIR && errno != ELOOP)
      return -errno;
    return unlinkat(dfd, rel, 0) < 0 && errno != ENOENT ? -errno : 0;
  }
  int r = dir_each_fd(fd, rm_entry, NULL);
  if (r == 0 && unlinkat(dfd, rel, AT_REMOVEDIR) < 0 && errno != ENOENT)
    r = -errno;
  return r;
}

/* The first line of path, without its newline, into buf; false if none. */
static bool read_line(const char *path, char *buf, size_t len)
{
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return false;
  bool ok = fgets(buf, (int) len, f) != NULL;
  fclose(f);
  if (ok)
    buf[strcspn(buf, "\n")] = '\0';
  return ok;
}

enum fs_wcache fs_write_cache(dev_t dev, const char *sysroot)
{
  /* A whole disk has queue/; a partition's directory sits in its disk's. */
  static const char *const rel[] = {"queue/write_cache",
                                    "../queue/write_cache"};
  char path[512], v[64];
  for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
    snprintf(path, sizeof path, "%s/dev/block/%u:%u/%s", sysroot, major(dev),
             minor(dev), rel[i]);
    if (!read_line(path, v, sizeof v))
      continue;
    if (strcmp(v, "write through") == 0)
      return FS_WC_THROUGH;
    if (strcmp(v, "write back") == 0)
      return FS_WC_BACK;
    return FS_WC_UNKNOWN;
  }
  return FS_WC_UNKNOWN;
}
