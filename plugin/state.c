/* crucible-c upstairs: the rollback state file (state=FILE).
 *
 * The file records the highest (generation, flush number) this volume had
 * acknowledged by a flush that covered writes (a flush with nothing dirty
 * leaves no trace on the downstairs, so it cannot be checked later).  At
 * activation, if every ready downstairs reports a lower maximum over its
 * extents of (gen, flush), the replicas were rolled back as a whole and
 * activation is refused, unless accept_rollback.
 *
 * Invariants: the file is replaced atomically (temp file, fsync, rename,
 * fsync of the directory), so it always holds one complete record; a
 * flush returns to its caller only after a record at least as new as that
 * flush is durable (up__state_commit, caller threads, under state_lock).
 * Format: one line "crucible-state 1 GEN FLUSH\n".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "upstairs_int.h"

/* Read the state file: 0, -ENOENT if missing, other -errno if unusable. */
int up__state_load(struct upstairs *up)
{
  char buf[128], tail;
  unsigned long long g, f;
  ssize_t n;
  int fd = open(up->cfg.state_path, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    return -errno;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0)
    return -errno;
  buf[n] = '\0';
  if (sscanf(buf, "crucible-state 1 %llu %llu%c", &g, &f, &tail) != 3 ||
      tail != '\n')
    return -EINVAL;
  up->st_gen = g;
  up->st_flush = f;
  up->st_loaded = true;
  return 0;
}

/* Write (gen, flush) durably and atomically.  0 or -errno. */
int up__state_save(struct upstairs *up, uint64_t gen, uint64_t flush)
{
  char tmp[sizeof up->cfg.state_path + 8], dir[sizeof up->cfg.state_path];
  char line[96];
  int len, fd, r = 0;
  char *slash;

  snprintf(tmp, sizeof tmp, "%s.tmp", up->cfg.state_path);
  len = snprintf(line, sizeof line,
                 "crucible-state 1 %" PRIu64 " %" PRIu64 "\n", gen, flush);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -errno;
  if (write(fd, line, (size_t) len) != len || fsync(fd) < 0)
    r = errno ? -errno : -EIO;
  if (close(fd) < 0 && r == 0)
    r = -errno;
  if (r == 0 && rename(tmp, up->cfg.state_path) < 0)
    r = -errno;
  if (r < 0) {
    unlink(tmp);
    return r;
  }
  snprintf(dir, sizeof dir, "%s", up->cfg.state_path);
  slash = strrchr(dir, '/');
  if (slash == dir)
    slash[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    snprintf(dir, sizeof dir, ".");
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (fsync(fd) < 0)
    r = -errno;
  close(fd);
  if (r == 0) {
    up->st_gen = gen;
    up->st_flush = flush;
  }
  return r;
}

/* Caller thread, after a flush succeeded: make the newest acknowledged
 * flush durable in the state file.  0 or -errno (the flush then fails). */
int up__state_commit(struct upstairs *up)
{
  uint64_t f;
  int r = 0;

  if (!up->cfg.state_path[0])
    return 0;
  pthread_mutex_lock(&up->state_lock);
  pthread_mutex_lock(&up->lock);
  f = up->acked_flush;
  pthread_mutex_unlock(&up->lock);
  if (f > up->st_flush) {
    r = up__state_save(up, up->gen, f);
    if (r < 0)
      log_error("state file %s: cannot record flush %" PRIu64 ": %s",
                up->cfg.state_path, f, log_strerror(-r));
  }
  pthread_mutex_unlock(&up->state_lock);
  return r;
}

/* (gen, flush) a < b, lexicographically. */
static bool state_less(uint64_t ag, uint64_t af, uint64_t bg, uint64_t bf)
{
  return ag < bg || (ag == bg && af < bf);
}

/* Loop thread, before activation: refuse a whole-volume rollback, or
 * create / rewrite the state file.  0, or -1 after failing the start. */
int up__state_check(struct upstairs *up)
{
  uint64_t mg = 0, mf = 0; /* highest any downstairs reports */
  bool rolled = true;
  char seen[256] = "";
  size_t len = 0;
  int r;

  if (!up->cfg.state_path[0])
    return 0;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    uint64_t g = 0, f = 0;
    if (c->state != CL_READY)
      continue;
    for (uint32_t e = 0; e < c->nstates; e++) {
      struct proto_extent_state s;
      proto_extent_state_get(c->states + (size_t) e * PROTO_EXTENT_STATE_LEN,
                             &s);
      if (state_less(g, f, s.gen, s.flush))
        g = s.gen, f = s.flush;
    }
    if (len < sizeof seen)
      len += (size_t) snprintf(seen + len, sizeof seen - len,
                               "%s%s gen %" PRIu64 " flush %" PRIu64,
                               len ? ", " : "", c->name, g, f);
    if (!state_less(g, f, up->st_gen, up->st_flush))
      rolled = false;
    if (state_less(mg, mf, g, f))
      mg = g, mf = f;
  }
  if (up->st_loaded && rolled && !up->cfg.accept_rollback) {
    up__start_fail(up,
                   "rollback: state file recorded gen %" PRIu64
                   " flush %" PRIu64 " but every downstairs reports less "
                   "(%s); accept-rollback=true starts anyway (state file "
                   "%s)",
                   up->st_gen, up->st_flush, seen, up->cfg.state_path);
    return -1;
  }
  if (up->st_loaded && !rolled)
    return 0;
  if (up->st_loaded)
    log_error("rollback accepted: state file %s recorded gen %" PRIu64
              " flush %" PRIu64 ", downstairs report %s",
              up->cfg.state_path, up->st_gen, up->st_flush, seen);
  r = up__state_save(up, mg, mf);
  if (r < 0) {
    up__start_fail(up, "state file %s: cannot write: %s", up->cfg.state_path,
                   log_strerror(-r));
    return -1;
  }
  return 0;
}
