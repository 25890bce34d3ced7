/* crucible-c downstairs: clone a whole region from a running downstairs
 * (see clone.h).
 *
 * Consistency on a live source.  The source serves each FILE_REQ with
 * the extent closed (database checkpointed whole) and IO to it held, but
 * only for that one chunk: an upstairs may write, trim or flush the
 * extent between two chunks.  Per extent we fetch the data file, then the
 * database, and accept the copy only if
 *   1. the database is one snapshot: it came in one FILE_REQ (up to
 *      DS_REPAIR_CHUNK = 4 MiB, which holds every context of a fully
 *      written 128 MiB extent), or else a second download right after it
 *      is byte-identical (between closed snapshots the database only moves
 *      forward: writes and trims add rows, a flush drops rows and raises
 *      the flush number; so equal bytes mean nothing changed meanwhile);
 *   2. opening the copied extent with the region code and checking every
 *      written block's bytes against its stored contexts (what `verify`
 *      does: region_verify_extent) finds no bad block.
 * Otherwise the extent is fetched again (DS_CLONE_TRIES in all).  Data
 * first is the order that tolerates writes: a write commits its context
 * before its pwrite and every context stays until a flush, so a block
 * copied before or during a write still matches the later database; only
 * a flush (or trim) between the two downloads can leave a block matching
 * none, and the check catches it.
 *
 * This is enough because the clone need only be internally consistent
 * per block, like a replica that was killed: when it joins a volume, the
 * upstairs reconciles it (any extent dirty or differing in gen/flush from
 * the others is repaired from the newest replica) or, if the volume is
 * running, live-repairs every extent; and it checks every read (hash, GCM
 * tag binding LBA and version), reading another replica when one is bad.
 * A clean copied extent holds exactly the flushed state its database
 * names; a dirty one stays dirty, so the next reconciliation repairs it.
 */
#include "clone.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "extent.h"
#include "progress.h"
#include "region.h"
#include "repair.h"

/* The state of one clone; everything is owned and freed by ds_clone. */
struct clone {
  const struct ds_clone_opts *o;
  struct ds_clone_result *res;
  char *err;
  size_t errlen;
  char dst[PATH_MAX - 64]; /* o->dir without trailing slashes */
  char tmp[PATH_MAX];      /* dst + DS_CLONE_SUFFIX */
  struct sockaddr_storage addr;
  struct proto_hello_ok ok; /* the source's HELLO_OK */
  int peer;                 /* repair-peer socket, -1 when closed */
  uint8_t *buf;             /* DS_REPAIR_BUF_LEN */
  struct region *r;         /* the new region, open in tmp */
  int dirfd;                /* region_dirfd(r) */
  struct progress p;
  char label[48]; /* "clone: extent 3/16", read by p */
  uint64_t done;  /* data bytes fetched, for p */
};

static volatile sig_atomic_t stop_signal;

/* The last error the region or repair code logged: shown in our one line
 * instead of on a line of its own (a torn copy logs SQLite errors that a
 * re-fetch then cures). */
static char last_log[256];

static void on_stop_signal(int sig)
{
  stop_signal = sig;
}

static void capture_log(enum log_level level, const char *msg)
{
  if (level == LOG_ERROR)
    snprintf(last_log, sizeof last_log, "%s", msg);
}

/* Set the user's one-line message (the first one wins); returns r. */
static int __attribute__((format(printf, 3, 4)))
fail(struct clone *c, int r, const char *fmt, ...)
{
  va_list ap;
  if (c->err[0] == '\0') {
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
  }
  return r;
}

/* nftw callback: delete everything, children first. */
static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
  (void) st, (void) flag, (void) ftw;
  return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Delete the tree at path (an unfinished clone of ours). */
static int rm_tree(const char *path)
{
  if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
    return -errno;
  return 0;
}

/* DIR must be absent or an empty directory; its parent must exist. */
static int check_dest(struct clone *c)
{
  size_t n = strlen(c->o->dir);
  while (n > 1 && c->o->dir[n - 1] == '/')
    n--;
  if (n >= sizeof c->dst)
    return fail(c, -ENAMETOOLONG, "%s: path too long", c->o->dir);
  memcpy(c->dst, c->o->dir, n);
  c->dst[n] = '\0';
  snprintf(c->tmp, sizeof c->tmp, "%s%s", c->dst, DS_CLONE_SUFFIX);

  struct stat st;
  if (stat(c->dst, &st) < 0)
    return errno == ENOENT
               ? 0
               : fail(c, -errno, "%s: %s", c->dst, log_strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return fail(c, -ENOTDIR, "%s: not a directory", c->dst);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/region.json", c->dst);
  if (access(path, F_OK) == 0)
    return fail(c, -EEXIST, "%s: region already exists", c->dst);
  int dfd = open(c->dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return fail(c, -errno, "%s: %s", c->dst, log_strerror(errno));
  int r = region_dir_empty(dfd);
  close(dfd);
  /* An empty DIR is fine: the final rename(2) replaces it. */
  if (r == -ENOTEMPTY)
    return fail(c, r, "%s: directory is not empty", c->dst);
  return r < 0 ? fail(c, r, "%s: %s", c->dst, log_strerror(-r)) : 0;
}

/* A DIR.clone-tmp left by an interrupted clone (it has our marker, and
 * no process holds its lock) is deleted; anything else there is not ours. */
static int clear_leftover(struct clone *c)
{
  char marker[PATH_MAX + sizeof DS_CLONE_MARKER];
  int fd = open(c->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT
               ? 0
               : fail(c, -errno, "%s: %s", c->tmp, log_strerror(errno));
  int r = flock(fd, LOCK_EX | LOCK_NB) < 0 ? -errno : 0;
  close(fd);
  if (r == -EWOULDBLOCK)
    return fail(c, -EBUSY, "%s: another clone is running", c->tmp);
  snprintf(marker, sizeof marker, "%s/%s", c->tmp, DS_CLONE_MARKER);
  if (access(marker, F_OK) < 0)
    return fail(c, -EEXIST,
                "%s exists and was not left by clone: remove "
                "it first",
                c->tmp);
  if (c->o->progress)
    fprintf(c->o->progress,
            "clone: deleting %s, left by an interrupted "
            "clone\n",
            c->tmp);
  if ((r = rm_tree(c->tmp)) < 0)
    return fail(c, r, "%s: %s", c->tmp, log_strerror(-r));
  return 0;
}

/* Resolve the source address (blocking getaddrinfo; the first answer). */
static int resolve(struct clone *c)
{
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
  char port[8];
  snprintf(port, sizeof port, "%u", c->o->port);
  int r = getaddrinfo(c->o->host, port, &hints, &res);
  if (r != 0 || res == NULL)
    return fail(c, -EHOSTUNREACH, "%s: cannot resolve: %s", c->o->source,
                r == EAI_SYSTEM ? log_strerror(errno) : gai_strerror(r));
  memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return 0;
}

/* (Re)connect to the source as a repair peer naming no uuid; the first
 * connection learns the region, later ones must see the same one. */
static int connect_source(struct clone *c)
{
  struct proto_region def = {0};
  if (c->peer >= 0)
    close(c->peer);
  if (c->r)
    def = *region_def(c->r);
  last_log[0] = '\0';
  c->peer = ds_repair_peer_open(&def, &c->addr, c->o->timeout_s, c->o->auth,
                                c->buf, DS_REPAIR_BUF_LEN, &c->ok);
  if (c->peer >= 0 && c->r == NULL && geom_check(&c->ok.region) < 0) {
    close(c->peer);
    c->peer = -EPROTO;
  }
  if (c->peer >= 0)
    return 0;
  int r = c->peer;
  if (last_log[0]) /* "repair source refused: ..." */
    return fail(c, r, "%s: %s", c->o->source, last_log);
  if (r == -EPROTO)
    return fail(c, r,
                "%s: not a crucible downstairs, or its region "
                "changed",
                c->o->source);
  return fail(c, r, "%s: %s", c->o->source, log_strerror(-r));
}

/* Create the empty region in DIR.clone-tmp (same uuid, geometry,
 * encryption, highest generation and key check value as the source),
 * mark it unfinished and open it. */
static int create_region(struct clone *c)
{
  struct proto_region def = c->ok.region;
  char marker[PATH_MAX + sizeof DS_CLONE_MARKER];
  int r = region_create(c->tmp, &def);
  if (r < 0)
    return fail(c, r, "%s: %s", c->tmp, log_strerror(-r));
  snprintf(marker, sizeof marker, "%s/%s", c->tmp, DS_CLONE_MARKER);
  int fd = open(marker, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0)
    return fail(c, -errno, "%s: %s", marker, log_strerror(errno));
  static const char text[] = "unfinished crucible-downstairs clone: not a "
                             "region; safe to delete\n";
  r = write(fd, text, sizeof text - 1) < 0 ? -errno : 0;
  close(fd);
  if (r == 0)
    r = region_open(c->tmp, &c->r);
  if (r == 0 && c->ok.highest_gen)
    r = region_set_highest_gen(c->r, c->ok.highest_gen);
  if (r == 0 && c->ok.has_kcv)
    r = region_set_kcv(c->r, &c->ok.kcv);
  if (r < 0)
    return fail(c, r, "%s: %s", c->tmp, log_strerror(-r));
  c->dirfd = region_dirfd(c->r);
  return 0;
}

/* After each data chunk: progress, and stop on SIGINT/SIGTERM. */
static int on_chunk(void *arg, uint32_t n)
{
  struct clone *c = arg;
  c->done += n;
  progress_update(&c->p, c->done);
  return stop_signal ? -EINTR : 0;
}

/* 1 if the files rel_a and rel_b (under dirfd) differ, 0, or -errno. */
static int files_differ(int dirfd, const char *rel_a, const char *rel_b,
                        uint8_t *buf, size_t len)
{
  int a = openat(dirfd, rel_a, O_RDONLY | O_CLOEXEC);
  int b = openat(dirfd, rel_b, O_RDONLY | O_CLOEXEC);
  uint8_t *ba = buf, *bb = buf + len / 2;
  int r = a < 0 || b < 0 ? -errno : 0;
  for (off_t off = 0; r == 0;) {
    ssize_t na = pread(a, ba, len / 2, off);
    ssize_t nb = pread(b, bb, len / 2, off);
    if (na < 0 || nb < 0)
      r = -errno;
    else if (na != nb || memcmp(ba, bb, (size_t) na) != 0)
      r = 1;
    else if (na == 0)
      break;
    off += na;
  }
  if (a >= 0)
    close(a);
  if (b >= 0)
    close(b);
  return r;
}

/* Fetch extent eid's data file, then its database, over the open peer
 * connection; a database too big for one FILE_REQ is fetched twice and
 * must not change (-EAGAIN otherwise: the extent changed meanwhile). */
static int fetch_extent(struct clone *c, uint32_t eid)
{
  const struct proto_region *def = region_def(c->r);
  char rel[EXT_PATH_MAX], db[EXT_PATH_MAX + 16];
  char again[EXT_PATH_MAX + 16], side[EXT_PATH_MAX + 16];
  struct stat st;
  ext_path(eid, rel);
  snprintf(db, sizeof db, "%s.db", rel);
  snprintf(again, sizeof again, "%s.db.again", rel);
  /* A -wal left by the check of an earlier try must not replay onto the
   * new database (region_extent_close removes it; be sure). */
  static const char *const sfx[] = {"wal", "shm", "jnl"};
  for (int i = 0; i < 3; i++) {
    snprintf(side, sizeof side, "%s.db-%s", rel, sfx[i]);
    if (unlinkat(c->dirfd, side, 0) < 0 && errno != ENOENT)
      return -errno;
  }
  uint8_t *b = c->buf;
  int r = ds_repair_fetch_file(c->peer, c->dirfd, rel, eid, PROTO_FILE_EXTENT,
                               def->extent_size * def->block_size, b,
                               DS_REPAIR_BUF_LEN, on_chunk, c);
  if (r == 0)
    r = ds_repair_fetch_file(c->peer, c->dirfd, db, eid, PROTO_FILE_DB, 0, b,
                             DS_REPAIR_BUF_LEN, NULL, NULL);
  if (r == 0 && fstatat(c->dirfd, db, &st, 0) < 0)
    r = -errno;
  if (r < 0 || (uint64_t) st.st_size <= DS_REPAIR_CHUNK)
    return r;
  r = ds_repair_fetch_file(c->peer, c->dirfd, again, eid, PROTO_FILE_DB, 0, b,
                           DS_REPAIR_BUF_LEN, NULL, NULL);
  if (r == 0)
    r = files_differ(c->dirfd, db, again, b, DS_REPAIR_BUF_LEN);
  unlinkat(c->dirfd, again, 0);
  return r == 1 ? -EAGAIN : r;
}

static void count_bad(uint32_t eid, uint64_t block, void *arg)
{
  (void) eid, (void) block;
  (*(uint64_t *) arg)++;
}

/* The `verify` check of one copied extent: -EBADMSG if a written block
 * matches none of its contexts, or the error opening it gave. */
static int check_extent(struct clone *c, uint32_t eid)
{
  uint64_t bad = 0, checked;
  int r = region_verify_extent(c->r, eid, count_bad, &bad, &checked);
  /* Close (and forget) so a re-fetch never replaces open files, and the
   * database is checkpointed whole before the final syncfs. */
  int rc = region_extent_close(c->r, eid, true);
  if (r == 0 && bad)
    r = -EBADMSG;
  return r < 0 ? r : rc;
}

/* Copy extent eid, re-fetching it while the check fails (at most
 * DS_CLONE_TRIES fetches); a broken connection is reopened. */
static int clone_extent(struct clone *c, uint32_t eid)
{
  uint32_t count = region_def(c->r)->extent_count;
  uint64_t ext_bytes =
      region_def(c->r)->extent_size * region_def(c->r)->block_size;
  int r = 0;
  snprintf(c->label, sizeof c->label, "clone: extent %u/%u", eid + 1, count);
  for (int attempt = 1; attempt <= DS_CLONE_TRIES; attempt++) {
    if (attempt > 1)
      c->res->refetched++;
    c->done = (uint64_t) eid * ext_bytes;
    last_log[0] = '\0';
    if (c->peer < 0 && (r = connect_source(c)) < 0)
      return r;
    r = fetch_extent(c, eid);
    if (r == -EINTR)
      return fail(c, r, "interrupted by signal %d", (int) stop_signal);
    if (r < 0 && r != -EAGAIN) {
      /* Network or source trouble: start the next try afresh. */
      close(c->peer);
      c->peer = -1;
      continue;
    }
    if (r == 0 && (r = check_extent(c, eid)) == 0)
      return 0;
  }
  if (r == -EAGAIN)
    return fail(c, r,
                "extent %u changed during each of %d copies: too "
                "much write traffic, try again",
                eid, DS_CLONE_TRIES);
  if (r == -EBADMSG)
    return fail(c, r,
                "extent %u: copy does not verify after %d tries "
                "(run verify on the source)",
                eid, DS_CLONE_TRIES);
  if (last_log[0])
    return fail(c, r, "extent %u: %s", eid, last_log);
  return fail(c, r, "%s: extent %u: %s", c->o->source, eid, log_strerror(-r));
}

/* Make the copy durable and give it its name: syncfs covers every file
 * and directory written, then the marker goes, then the rename (the
 * commit point), then the parent directory is synced. */
static int commit(struct clone *c)
{
  char marker[PATH_MAX + sizeof DS_CLONE_MARKER], parent[PATH_MAX];
  int dfd = open(c->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int r = dfd < 0 || syncfs(dfd) < 0 ? -errno : 0;
  snprintf(marker, sizeof marker, "%s/%s", c->tmp, DS_CLONE_MARKER);
  if (r == 0 && unlink(marker) < 0)
    r = -errno;
  if (r == 0 && fsync(dfd) < 0)
    r = -errno;
  if (dfd >= 0)
    close(dfd);
  if (r == 0 && rename(c->tmp, c->dst) < 0)
    r = -errno;
  if (r < 0)
    return fail(c, r, "%s: %s", c->dst, log_strerror(-r));
  snprintf(parent, sizeof parent, "%s", c->dst);
  char *slash = strrchr(parent, '/');
  if (slash == parent)
    parent[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    snprintf(parent, sizeof parent, ".");
  int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  r = fd < 0 || fsync(fd) < 0 ? -errno : 0;
  if (fd >= 0)
    close(fd);
  return r < 0 ? fail(c, r, "%s: %s", parent, log_strerror(-r)) : 0;
}

/* Every extent, with progress. */
static int copy_extents(struct clone *c)
{
  const struct proto_region *def = region_def(c->r);
  int r = 0;
  snprintf(c->label, sizeof c->label, "clone");
  progress_start(&c->p, c->o->progress, c->o->tty, c->label, geom_size(def));
  for (uint32_t eid = 0; eid < def->extent_count && r == 0; eid++)
    r = clone_extent(c, eid);
  if (r == 0)
    snprintf(c->label, sizeof c->label, "clone: %u extents", def->extent_count);
  progress_end(&c->p, r == 0);
  return r;
}

/* SIGINT/SIGTERM stop the copy at the next chunk, so the temporary
 * directory is removed (no SA_RESTART is needed: the socket loops retry
 * on EINTR, and a chunk is short). */
static void catch_signals(void)
{
  struct sigaction sa = {.sa_handler = on_stop_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static double now_secs(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int ds_clone(const struct ds_clone_opts *o, struct ds_clone_result *res,
             char *err, size_t errlen)
{
  struct clone c = {.o = o,
                    .res = res,
                    .err = err,
                    .errlen = errlen,
                    .peer = -1,
                    .dirfd = -1};
  double t0 = now_secs();
  bool made = false;
  memset(res, 0, sizeof *res);
  err[0] = '\0';
  catch_signals();
  log_set_sink(capture_log);
  c.buf = malloc(DS_REPAIR_BUF_LEN);
  int r = c.buf ? 0 : fail(&c, -ENOMEM, "%s", log_strerror(ENOMEM));
  if (r == 0)
    r = check_dest(&c);
  if (r == 0)
    r = clear_leftover(&c);
  if (r == 0)
    r = resolve(&c);
  if (r == 0)
    r = connect_source(&c);
  if (r == 0) {
    made = true;
    r = create_region(&c);
  }
  if (r == 0)
    r = copy_extents(&c);
  if (c.peer >= 0)
    close(c.peer);
  if (c.r)
    res->def = *region_def(c.r);
  region_close(c.r); /* every extent closed: databases whole */
  if (r == 0)
    r = commit(&c);
  if (r < 0 && made)
    rm_tree(c.tmp);
  free(c.buf);
  log_set_sink(NULL);
  res->bytes = r == 0 ? geom_size(&res->def) : 0;
  res->secs = now_secs() - t0;
  return r;
}
