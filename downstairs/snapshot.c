/* crucible-c downstairs: snapshots on disk (see snapshot.h for the layout,
 * the chain rule and the crash rule).
 *
 * Every durable step is "write, fsync, rename, fsync the parent": a
 * directory that has its final name is whole.  Paths are relative to the
 * region directory's fd (openat and friends), so nothing depends on the
 * process' working directory.
 */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "extent.h"
#include "fsutil.h"

#define INFO "snapshot.info"
#define DELETING "deleting"
#define INFO_MAX 512

int snap__crash_at;

static void crash_point(int cp)
{
  if (snap__crash_at == cp)
    raise(SIGKILL);
}

/* --- small file-system helpers ----------------------------------------- */

static int fsync_dir(int dfd, const char *rel)
{
  return fs_fsync_at(dfd, rel, O_DIRECTORY);
}

static void seq_dir(uint32_t seq, char *buf, size_t len)
{
  snprintf(buf, len, SNAP_DIR "/%" PRIu32, seq);
}

static void copy_name(uint32_t eid, char *buf, size_t len)
{
  snprintf(buf, len, "e%08" PRIx32, eid);
}

/* --- snapshot.info -------------------------------------------------------- */

static int info_format(const struct snap *s, char *buf, size_t len)
{
  int n =
      snprintf(buf, len,
               "crucible-snapshot 1\nname %s\nseq %" PRIu32 "\ntime %" PRIu64
               "\ngen %" PRIu64 "\nflush %" PRIu64 "\nextents %" PRIu32 "\n",
               s->name, s->seq, s->time, s->gen, s->flush, s->extent_count);
  return n < 0 || (size_t) n >= len ? -EINVAL : n;
}

/* Strict: exactly what info_format writes. */
static int info_parse(const char *buf, struct snap *s)
{
  char name[SNAP_NAME_MAX + 2];
  char check[INFO_MAX];
  int used = 0;
  memset(s, 0, sizeof *s);
  if (sscanf(buf,
             "crucible-snapshot 1\nname %64s\nseq %" SCNu32 "\ntime %" SCNu64
             "\ngen %" SCNu64 "\nflush %" SCNu64 "\nextents %" SCNu32 "\n%n",
             name, &s->seq, &s->time, &s->gen, &s->flush, &s->extent_count,
             &used) != 6 ||
      used == 0 || buf[used] != '\0')
    return -EINVAL;
  if (!proto_snap_stored_ok(name) || s->seq == 0 || s->extent_count == 0)
    return -EINVAL;
  memcpy(s->name, name, strlen(name) + 1); /* checked: <= SNAP_NAME_MAX */
  if (info_format(s, check, sizeof check) < 0 || strcmp(check, buf) != 0)
    return -EINVAL;
  return 0;
}

static int info_read(int dfd, const char *dir, struct snap *s)
{
  char rel[PATH_MAX], buf[INFO_MAX];
  snprintf(rel, sizeof rel, "%s/" INFO, dir);
  int fd = openat(dfd, rel, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  int r = n < 0 ? -errno : 0;
  close(fd);
  if (r < 0)
    return r;
  buf[n] = '\0';
  return info_parse(buf, s);
}

static int write_file_sync(int dfd, const char *rel, const char *p, size_t len)
{
  int fd = openat(dfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  ssize_t n = write(fd, p, len);
  int r = n < 0 ? -errno : (size_t) n != len ? -EIO : 0;
  if (r == 0 && fsync(fd) < 0)
    r = -errno;
  close(fd);
  return r;
}

/* --- the catalog ------------------------------------------------------------ */

const struct snap *snap_find(const struct snap_cat *cat, const char *name)
{
  for (unsigned i = 0; i < cat->n; i++)
    if (strcmp(cat->v[i].name, name) == 0)
      return &cat->v[i];
  return NULL;
}

int snap_has_copy(int dfd, uint32_t seq, uint32_t eid)
{
  char rel[PATH_MAX], d[64], c[16];
  seq_dir(seq, d, sizeof d);
  copy_name(eid, c, sizeof c);
  snprintf(rel, sizeof rel, "%s/%s", d, c);
  if (faccessat(dfd, rel, F_OK, 0) == 0)
    return 1;
  return errno == ENOENT ? 0 : -errno;
}

/* Finish the delete of the snapshot in directory sdir (seq): every
 * complete copy goes to the snapshot older (seq older; 0: none) where that
 * one lacks it, the rest is removed, then the record, then the directory.
 * Idempotent: a crash anywhere leaves a state it resumes from. */
/* One pass over the copies in snapshot directory sd: each goes to od
 * (snapshot older) where that one lacks it, else is removed.  The number
 * of copies it found, or -errno. */
struct delete_pass {
  int dfd;
  const char *sd, *od;
  uint32_t older;
  int found, *done;
};

static int delete_one(int sdfd, const char *name, void *arg)
{
  struct delete_pass *p = arg;
  char from[PATH_MAX], to[PATH_MAX];
  uint32_t eid;
  char tail;
  (void) sdfd;
  if (name[0] != 'e' || sscanf(name, "e%8" SCNx32 "%c", &eid, &tail) != 1)
    return 0; /* the record and marker last; .tmp leftovers below */
  p->found++;
  snprintf(from, sizeof from, "%s/%s", p->sd, name);
  snprintf(to, sizeof to, "%s/%s", p->od, name);
  int r = 0, has = p->older ? snap_has_copy(p->dfd, p->older, eid) : 1;
  if (has < 0)
    r = has;
  else if (has == 0 && renameat(p->dfd, from, p->dfd, to) < 0)
    r = -errno;
  else if (has == 1)
    r = fs_rm_rf(p->dfd, from);
  if (r == 0 && ++*p->done == 1)
    crash_point(SNAP_CP_DELETE_HALF);
  return r;
}

static int delete_pass(int dfd, const char *sd, const char *od, uint32_t older,
                       int *done)
{
  struct delete_pass p = {dfd, sd, od, older, 0, done};
  int r = fs_dir_each(dfd, sd, true, delete_one, &p);
  return r < 0 ? r : p.found;
}

static int delete_dir(int dfd, uint32_t seq, uint32_t older)
{
  char sd[64], od[64], from[PATH_MAX];
  seq_dir(seq, sd, sizeof sd);
  seq_dir(older, od, sizeof od);
  if (faccessat(dfd, sd, F_OK, 0) < 0)
    return errno == ENOENT ? 0 : -errno;
  /* Passes until one finds no copy: readdir need not return every entry
   * of a directory changed under it, and a copy left would be lost with
   * the directory below. */
  int r, done = 0;
  while ((r = delete_pass(dfd, sd, od, older, &done)) > 0)
    ;
  /* The moves durable before the record goes (both directories). */
  if (r == 0 && older)
    r = fsync_dir(dfd, od);
  if (r == 0)
    r = fsync_dir(dfd, sd);
  snprintf(from, sizeof from, "%s/" INFO, sd);
  if (r == 0 && unlinkat(dfd, from, 0) < 0 && errno != ENOENT)
    r = -errno;
  if (r == 0)
    crash_point(SNAP_CP_DELETE_INFO);
  if (r == 0)
    r = fs_rm_rf(dfd, sd); /* the marker and any .tmp copy */
  if (r == 0)
    r = fsync_dir(dfd, SNAP_DIR);
  return r;
}

/* Insertion into the sorted catalog. */
static int cat_add(struct snap_cat *cat, const struct snap *s)
{
  if (cat->n == SNAP_MAX)
    return -ENOSPC;
  unsigned i = cat->n;
  while (i > 0 && cat->v[i - 1].seq > s->seq) {
    cat->v[i] = cat->v[i - 1];
    i--;
  }
  cat->v[i] = *s;
  cat->n++;
  if (s->seq > cat->seq_hi)
    cat->seq_hi = s->seq;
  return 0;
}

/* The entries of snapshots/: whole snapshots into cat, deletes pending
 * (marker, or no record) into del (seqs, up to SNAP_MAX each), SEQ.tmp
 * leftovers removed. */
struct cat_scan {
  int dfd;
  struct snap_cat *cat;
  uint32_t *del;
  unsigned *ndel;
  bool recover;
};

static int cat_scan_one(int sdfd, const char *name, void *arg)
{
  struct cat_scan *c = arg;
  uint32_t seq;
  char tail = 0, sd[64], rel[PATH_MAX];
  (void) sdfd;
  int k = sscanf(name, "%" SCNu32 "%c", &seq, &tail);
  if (k < 1 || seq == 0)
    return 0;
  seq_dir(seq, sd, sizeof sd);
  if (k == 2) {
    /* SEQ.tmp: a create that never committed. */
    const char *dot = strchr(name, '.');
    snprintf(rel, sizeof rel, SNAP_DIR "/%s", name);
    if (c->recover && tail == '.' && dot && strcmp(dot, ".tmp") == 0)
      return fs_rm_rf(c->dfd, rel);
    return 0;
  }
  struct snap s;
  snprintf(rel, sizeof rel, "%s/" DELETING, sd);
  bool deleting = faccessat(c->dfd, rel, F_OK, 0) == 0;
  int ri = info_read(c->dfd, sd, &s);
  if (deleting || ri == -ENOENT) {
    if (*c->ndel == SNAP_MAX)
      return -ENOSPC;
    c->del[(*c->ndel)++] = seq;
    if (seq > c->cat->seq_hi)
      c->cat->seq_hi = seq;
    return 0;
  }
  if (ri < 0 || s.seq != seq) {
    log_error(SNAP_DIR "/%s: not a snapshot record", name);
    return ri < 0 ? ri : -EINVAL;
  }
  return cat_add(c->cat, &s);
}

static int cat_scan(int dfd, struct snap_cat *cat, uint32_t *del,
                    unsigned *ndel, bool recover)
{
  struct cat_scan c = {dfd, cat, del, ndel, recover};
  return fs_dir_each(dfd, SNAP_DIR, true, cat_scan_one, &c);
}

/* Remove eXXXXXXXX.tmp leftovers (copies that never committed: the write
 * that wanted each one never ran) from snapshot directory sd. */
static int drop_partial_one(int sdfd, const char *name, void *arg)
{
  size_t n = strlen(name);
  (void) arg;
  if (name[0] == 'e' && n > 4 && strcmp(name + n - 4, ".tmp") == 0)
    return fs_rm_rf(sdfd, name);
  return 0;
}

static int drop_partial_copies(int dfd, const char *sd)
{
  return fs_dir_each(dfd, sd, false, drop_partial_one, NULL);
}

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
  return x < y ? -1 : x > y;
}

/* The nearest snapshot older than seq in cat, or 0. */
static uint32_t older_than(const struct snap_cat *cat, uint32_t seq)
{
  uint32_t o = 0;
  for (unsigned i = 0; i < cat->n && cat->v[i].seq < seq; i++)
    o = cat->v[i].seq;
  return o;
}

int snap_cat_open(int dfd, struct snap_cat *cat)
{
  uint32_t del[SNAP_MAX];
  unsigned ndel = 0;
  memset(cat, 0, sizeof *cat);
  int r = cat_scan(dfd, cat, del, &ndel, true);
  /* Oldest first: a copy the older of two deleted snapshots hands down
   * is the right one for the snapshot below both. */
  qsort(del, ndel, sizeof *del, cmp_u32);
  for (unsigned i = 0; r == 0 && i < ndel; i++) {
    log_info(SNAP_DIR "/%" PRIu32 ": finishing its delete", del[i]);
    r = delete_dir(dfd, del[i], older_than(cat, del[i]));
  }
  for (unsigned i = 0; r == 0 && i < cat->n; i++) {
    char sd[64];
    seq_dir(cat->v[i].seq, sd, sizeof sd);
    r = drop_partial_copies(dfd, sd);
  }
  return r;
}

int snap_cat_read(int dfd, struct snap_cat *cat)
{
  uint32_t del[SNAP_MAX];
  unsigned ndel = 0;
  memset(cat, 0, sizeof *cat);
  return cat_scan(dfd, cat, del, &ndel, false);
}

int snap_create(int dfd, struct snap_cat *cat, struct snap *s)
{
  char sd[64], tmp[80], rel[PATH_MAX], buf[INFO_MAX];
  if (!proto_snap_stored_ok(s->name))
    return -EINVAL;
  if (snap_find(cat, s->name))
    return -EEXIST;
  if (cat->n == SNAP_MAX)
    return -ENOSPC;
  s->seq = cat->seq_hi + 1;
  if (cat->n && cat->v[cat->n - 1].seq >= s->seq)
    s->seq = cat->v[cat->n - 1].seq + 1;
  int r = 0;
  if (mkdirat(dfd, SNAP_DIR, 0755) == 0)
    r = fsync_dir(dfd, ".");
  else if (errno != EEXIST)
    r = -errno;
  seq_dir(s->seq, sd, sizeof sd);
  snprintf(tmp, sizeof tmp, "%s.tmp", sd);
  if (r == 0)
    r = fs_rm_rf(dfd, tmp);
  if (r == 0 && mkdirat(dfd, tmp, 0755) < 0)
    r = -errno;
  int len = r == 0 ? info_format(s, buf, sizeof buf) : r;
  if (len < 0)
    r = len;
  snprintf(rel, sizeof rel, "%s/" INFO, tmp);
  if (r == 0)
    r = write_file_sync(dfd, rel, buf, (size_t) len);
  if (r == 0)
    r = fsync_dir(dfd, tmp);
  if (r == 0)
    crash_point(SNAP_CP_CREATE_INFO);
  if (r == 0 && renameat(dfd, tmp, dfd, sd) < 0)
    r = -errno;
  if (r == 0)
    crash_point(SNAP_CP_CREATE_RENAMED);
  if (r == 0)
    r = fsync_dir(dfd, SNAP_DIR);
  if (r == 0)
    r = cat_add(cat, s);
  if (r < 0)
    fs_rm_rf(dfd, tmp);
  return r;
}

int snap_delete(int dfd, struct snap_cat *cat, const char *name)
{
  const struct snap *s = snap_find(cat, name);
  if (s == NULL)
    return -ENOENT;
  char sd[64], rel[PATH_MAX];
  uint32_t seq = s->seq;
  seq_dir(seq, sd, sizeof sd);
  snprintf(rel, sizeof rel, "%s/" DELETING, sd);
  int r = write_file_sync(dfd, rel, "", 0);
  if (r == 0)
    r = fsync_dir(dfd, sd);
  if (r < 0)
    return r;
  crash_point(SNAP_CP_DELETE_MARKED);
  /* From here on the snapshot is gone for every reader. */
  unsigned i = (unsigned) (s - cat->v);
  memmove(&cat->v[i], &cat->v[i + 1], (cat->n - i - 1) * sizeof cat->v[0]);
  cat->n--;
  return delete_dir(dfd, seq, older_than(cat, seq));
}

/* --- copy on first write --------------------------------------------------- */

/* Copy [0, size) of src into dst (already size bytes long, all a hole),
 * allocated ranges only.  0 or -errno. */
static int copy_sparse(int src, int dst, off_t size)
{
  off_t off = 0;
  while (off < size) {
    off_t data = lseek(src, off, SEEK_DATA);
    if (data < 0)
      return errno == ENXIO ? 0 : -errno;
    off_t hole = lseek(src, data, SEEK_HOLE);
    if (hole < 0)
      return -errno;
    off_t in = data, out = data;
    while (in < hole) {
      ssize_t n = copy_file_range(src, &in, dst, &out, (size_t) (hole - in), 0);
      if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP ||
                    errno == EINVAL)) {
        /* No in-kernel copy between these files: through a buffer. */
        static __thread uint8_t buf[1 << 16];
        size_t want = (size_t) (hole - in) < sizeof buf ? (size_t) (hole - in)
                                                        : sizeof buf;
        n = pread(src, buf, want, in);
        if (n > 0 && pwrite(dst, buf, (size_t) n, out) != n)
          return errno ? -errno : -EIO;
        if (n > 0)
          in += n, out += n;
      }
      if (n < 0)
        return -errno;
      if (n == 0)
        return -EIO; /* the file shrank under us: never for an extent */
    }
    off = hole;
  }
  return 0;
}

/* The data file: reflink if possible (1), else a sparse copy (0). */
static int copy_data(int src, int dfd, const char *rel)
{
  struct stat st;
  if (fstat(src, &st) < 0)
    return -errno;
  int dst = openat(dfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (dst < 0)
    return -errno;
  int r = ioctl(dst, FICLONE, src) == 0 ? 1 : 0;
  if (r == 0 && ftruncate(dst, st.st_size) < 0)
    r = -errno;
  if (r == 0)
    r = copy_sparse(src, dst, st.st_size);
  if (r >= 0 && fsync(dst) < 0)
    r = -errno;
  close(dst);
  return r;
}

/* The database, as of its last commit, by SQLite itself. */
static int copy_db(sqlite3 *db, int dfd, const char *rel, const char *abs)
{
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 1, abs, -1, SQLITE_TRANSIENT);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc != SQLITE_DONE && rc != SQLITE_OK)
    log_error("%s: VACUUM INTO: %s", abs, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE && rc != SQLITE_OK)
    return -EIO;
  return fs_fsync_at(dfd, rel, 0);
}

/* mkdir -p of the XX/YYY of extent path rel under base (relative). */
static int mk_parents(int dfd, const char *base, const char *rel)
{
  char p[PATH_MAX];
  for (const char *s = strchr(rel, '/'); s; s = strchr(s + 1, '/')) {
    snprintf(p, sizeof p, "%s/%.*s", base, (int) (s - rel), rel);
    if (mkdirat(dfd, p, 0755) < 0 && errno != EEXIST)
      return -errno;
  }
  return 0;
}

/* fsync rel's parents inside base, innermost first, then base. */
static int sync_parents(int dfd, const char *base, const char *rel)
{
  char p[PATH_MAX];
  for (const char *s = strrchr(rel, '/'); s;) {
    snprintf(p, sizeof p, "%s/%.*s", base, (int) (s - rel), rel);
    int r = fsync_dir(dfd, p);
    if (r < 0)
      return r;
    const char *q = s;
    s = NULL;
    while (q > rel && *--q != '/')
      ;
    if (q > rel)
      s = q;
  }
  return fsync_dir(dfd, base);
}

static int region_path(int dfd, char *buf, size_t len)
{
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", dfd);
  ssize_t n = readlink(proc, buf, len - 1);
  if (n < 0)
    return -errno;
  buf[n] = '\0';
  return 0;
}

int snap_copy_extent(int dfd, uint32_t seq, struct ext *x)
{
  char sd[64], c[16], tmp[96], fin[96], rel[EXT_PATH_MAX];
  char p[PATH_MAX], reg[PATH_MAX], abs[PATH_MAX * 2];
  seq_dir(seq, sd, sizeof sd);
  copy_name(x->eid, c, sizeof c);
  snprintf(tmp, sizeof tmp, "%s/%s.tmp", sd, c);
  snprintf(fin, sizeof fin, "%s/%s", sd, c);
  ext_path(x->eid, rel);
  /* The journal's rows into the database first (extent_jnl.c, J5): the
   * copy is of the database alone. */
  int r = ext_settle(x);
  if (r == 0)
    r = fs_rm_rf(dfd, tmp);
  if (r == 0 && mkdirat(dfd, tmp, 0755) < 0)
    r = -errno;
  if (r == 0)
    r = mk_parents(dfd, tmp, rel);
  snprintf(p, sizeof p, "%s/%s", tmp, rel);
  int reflinked = 0;
  if (r == 0)
    r = reflinked = copy_data(x->fd, dfd, p);
  if (r >= 0)
    crash_point(SNAP_CP_COPY_DATA);
  if (r >= 0)
    r = region_path(dfd, reg, sizeof reg);
  snprintf(p, sizeof p, "%s/%s.db", tmp, rel);
  snprintf(abs, sizeof abs, "%s/%s", reg, p);
  if (r >= 0)
    r = copy_db(x->db, dfd, p, abs);
  if (r >= 0)
    r = sync_parents(dfd, tmp, rel);
  if (r >= 0)
    crash_point(SNAP_CP_COPY_DB);
  if (r >= 0 && renameat(dfd, tmp, dfd, fin) < 0)
    r = -errno;
  if (r >= 0)
    r = fsync_dir(dfd, sd);
  if (r < 0) {
    log_error("%s: copy of extent %" PRIu32 ": %s", sd, x->eid,
              log_strerror(-r));
    fs_rm_rf(dfd, tmp);
    return r;
  }
  crash_point(SNAP_CP_COPY_RENAMED);
  return reflinked;
}

int snap_source(int dfd, const struct snap_cat *cat, const struct snap *s,
                uint32_t eid, uint32_t *seq)
{
  *seq = 0;
  for (unsigned i = 0; i < cat->n; i++) {
    if (cat->v[i].seq < s->seq)
      continue;
    int has = snap_has_copy(dfd, cat->v[i].seq, eid);
    if (has < 0)
      return has;
    if (has) {
      *seq = cat->v[i].seq;
      return 0;
    }
  }
  return 0;
}

int snap_open_copy(int dfd, uint32_t seq, struct ext *x)
{
  char sd[64], c[16], rel[96], reg[PATH_MAX], abs[PATH_MAX + 96];
  seq_dir(seq, sd, sizeof sd);
  copy_name(x->eid, c, sizeof c);
  snprintf(rel, sizeof rel, "%s/%s", sd, c);
  int r = region_path(dfd, reg, sizeof reg);
  if (r < 0)
    return r;
  snprintf(abs, sizeof abs, "%s/%s", reg, rel);
  int fd = openat(dfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  r = ext_open(x, fd, abs);
  close(fd);
  return r;
}

/* Allocated bytes under rel (recursively) into *bytes. */
static int du(int dfd, const char *rel, uint64_t *bytes);

static int du_one(int dirfd, const char *name, void *bytes)
{
  return du(dirfd, name, bytes);
}

static int du(int dfd, const char *rel, uint64_t *bytes)
{
  struct stat st;
  if (fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return -errno;
  *bytes += (uint64_t) st.st_blocks * 512;
  return S_ISDIR(st.st_mode) ? fs_dir_each(dfd, rel, false, du_one, bytes) : 0;
}

struct usage {
  uint64_t *bytes;
  uint32_t *copies;
};

static int usage_one(int sdfd, const char *name, void *arg)
{
  struct usage *u = arg;
  uint32_t eid;
  char tail;
  if (name[0] != 'e' || sscanf(name, "e%8" SCNx32 "%c", &eid, &tail) != 1)
    return 0;
  (*u->copies)++;
  return du(sdfd, name, u->bytes);
}

int snap_usage(int dfd, uint32_t seq, uint64_t *bytes, uint32_t *copies)
{
  char sd[64];
  struct usage u = {bytes, copies};
  seq_dir(seq, sd, sizeof sd);
  *bytes = 0;
  *copies = 0;
  return fs_dir_each(dfd, sd, false, usage_one, &u);
}
