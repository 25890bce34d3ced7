/* crucible-sim: the rollback fault (a replica put back to an older copy
 * of its region, its extent metadata forged) and the bookkeeping of the
 * blocks it may hold older than the model (rules in sim.h). */
#include <sqlite3.h>

#include "sim.h"

#define META_MAX 8 /* metadata rows kept per extent (3 exist today) */

/* The metadata rows of one extent database. */
struct meta {
  int n;
  char name[META_MAX][32];
  sqlite3_int64 value[META_MAX];
};

/* The one downstairs later faults may take down, or -1: the one holding
 * an unhealed flip, else the one holding rolled-back blocks.  When both
 * are set they are the same (each rule picks the other's replica). */
int special_ds(struct sim *s)
{
  if (s->corrupt_ds >= 0 && s->stale_ds >= 0 && s->corrupt_ds != s->stale_ds)
    fail(s, "sim bug: ds%d holds a flip and ds%d rolled-back blocks",
         s->corrupt_ds + 1, s->stale_ds + 1);
  return s->corrupt_ds >= 0 ? s->corrupt_ds : s->stale_ds;
}

/* Run cmd... (bounded, output to DIR/rollback.log); fail unless exit 0. */
static void run_or_fail(struct sim *s, char *const argv[])
{
  char log[600];
  snprintf(log, sizeof log, "%s/rollback.log", s->o.dir);
  if (run_cmd(s, argv, log, 300) != 0) {
    tail_file(log, 5);
    fail(s, "rollback: %s %s %s failed", argv[0], argv[1], argv[2]);
  }
}

/* Path of extent e's database in region directory dir. */
static void db_path(const char *dir, uint32_t e, char *out, size_t n)
{
  char rel[EXT_PATH_MAX];
  ext_path(e, rel);
  snprintf(out, n, "%s/%s.db", dir, rel);
}

static sqlite3 *db_open(struct sim *s, const char *path)
{
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
    fail(s, "rollback: open %s: %s", path,
         db ? sqlite3_errmsg(db) : "out of memory");
  sqlite3_busy_timeout(db, 5000);
  return db;
}

/* Every metadata row of extent e of replica dir (stopped) into *m. */
static void meta_read(struct sim *s, const char *dir, uint32_t e,
                      struct meta *m)
{
  char path[700];
  sqlite3_stmt *st;
  db_path(dir, e, path, sizeof path);
  sqlite3 *db = db_open(s, path);
  if (sqlite3_prepare_v2(db, "SELECT name, value FROM metadata", -1, &st,
                         NULL) != SQLITE_OK)
    fail(s, "rollback: %s: %s", path, sqlite3_errmsg(db));
  m->n = 0;
  while (sqlite3_step(st) == SQLITE_ROW && m->n < META_MAX) {
    snprintf(m->name[m->n], sizeof m->name[0], "%s",
             (const char *) sqlite3_column_text(st, 0));
    m->value[m->n++] = sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (m->n == 0)
    fail(s, "rollback: %s has no metadata rows", path);
}

/* Write the rows of *m into extent e's database of dir (the forgery);
 * the last close checkpoints the WAL, as the downstairs' clean stop. */
static void meta_write(struct sim *s, const char *dir, uint32_t e,
                       const struct meta *m)
{
  char path[700];
  sqlite3_stmt *st;
  db_path(dir, e, path, sizeof path);
  sqlite3 *db = db_open(s, path);
  if (sqlite3_prepare_v2(db,
                         "INSERT OR REPLACE INTO metadata(name, value) "
                         "VALUES (?1, ?2)",
                         -1, &st, NULL) != SQLITE_OK)
    fail(s, "rollback: %s: %s", path, sqlite3_errmsg(db));
  for (int k = 0; k < m->n; k++) {
    sqlite3_bind_text(st, 1, m->name[k], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, m->value[k]);
    if (sqlite3_step(st) != SQLITE_DONE)
      fail(s, "rollback: %s: %s", path, sqlite3_errmsg(db));
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  if (sqlite3_close(db) != SQLITE_OK)
    fail(s, "rollback: close %s", path);
}

/* Slurp or write back a small file (region.json). */
static size_t file_get(struct sim *s, const char *path, char *buf, size_t n)
{
  FILE *f = fopen(path, "r");
  size_t len = f ? fread(buf, 1, n, f) : 0;
  if (!f || len == 0 || len == n)
    fail(s, "rollback: read %s", path);
  fclose(f);
  return len;
}

static void file_put(struct sim *s, const char *path, const char *buf,
                     size_t len)
{
  FILE *f = fopen(path, "w");
  if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
    fail(s, "rollback: write %s", path);
}

/* The rollback fault begins: flush (every op issued so far is then on
 * replica i), stop i cleanly, copy its directory to DIR/snap, start it
 * again (it resyncs like an away).  fault_tick calls rollback_restore
 * some ops later. */
void rollback_copy(struct sim *s, int i)
{
  uint64_t nblk = s->size / BLOCK, was = 0;
  char snap[600];
  snprintf(snap, sizeof snap, "%s/snap", s->o.dir);
  flush_all(s);
  ds_stop_clean(s, i);
  char *rm[] = {"rm", "-rf", snap, NULL};
  char *cp[] = {"cp", "-a", s->ds_dir[i], snap, NULL};
  run_or_fail(s, rm);
  run_or_fail(s, cp);
  s->snap_seq = s->seq;
  for (uint64_t b = 0; b < nblk; b++) {
    s->snap_stale[b] = s->stale_ds == i && s->stale[b];
    was += s->snap_stale[b];
  }
  event(s,
        "fault rollback ds%d: copy of its region taken at op %" PRIu64
        " (%" PRIu64 " blocks in it stale already)",
        i + 1, s->seq, was);
  ds_up(s, i);
  away_back(s, i);
}

/* The rollback fault ends: once i is active again, flush (every extent
 * clean and level), stop i cleanly, read its extent metadata, put the
 * copy in place of its directory (its region.json kept), write the
 * metadata back into the copy's databases, start it, and issue nothing
 * until it is active (a write while it reconnects would make its extent
 * pending, and the resync would compare it). */
void rollback_restore(struct sim *s, int i)
{
  uint64_t nblk = s->size / BLOCK;
  uint32_t ne = s->o.extent_count;
  struct meta *m = xmalloc(ne * sizeof *m);
  char rj[600], buf[8192], snap[600];
  snprintf(snap, sizeof snap, "%s/snap", s->o.dir);
  away_check(s, true);
  flush_all(s);
  ds_stop_clean(s, i);
  for (uint32_t e = 0; e < ne; e++)
    meta_read(s, s->ds_dir[i], e, &m[e]);
  snprintf(rj, sizeof rj, "%s/region.json", s->ds_dir[i]);
  size_t len = file_get(s, rj, buf, sizeof buf);
  char *rm[] = {"rm", "-rf", s->ds_dir[i], NULL};
  char *cp[] = {"cp", "-a", snap, s->ds_dir[i], NULL};
  char *rms[] = {"rm", "-rf", snap, NULL};
  run_or_fail(s, rm);
  run_or_fail(s, cp);
  file_put(s, rj, buf, len);
  for (uint32_t e = 0; e < ne; e++)
    meta_write(s, s->ds_dir[i], e, &m[e]);
  run_or_fail(s, rms);
  free(m);
  /* What may now be older on i than the model says. */
  s->stale_pending = 0;
  for (uint64_t b = 0; b < nblk; b++) {
    s->stale[b] =
        s->snap_stale[b] || (s->blk_mod[b] && s->blk_mod[b] >= s->snap_seq);
    s->stale_pending += s->stale[b];
  }
  s->stale_ds = s->stale_pending ? i : -1;
  s->rollbacks++;
  event(s,
        "fault rollback ds%d: restored the copy of op %" PRIu64 ", "
        "metadata of %u extents forged to its values at the stop; %" PRIu64
        " blocks touched since may read older there",
        i + 1, s->snap_seq, ne, s->stale_pending);
  ds_up(s, i);
  away_back(s, i);
  away_check(s, true);
}

/* A write, trim or zero of [off, off+len) is issued: it rewrites every
 * block it touches on every replica (sim.h), so those are no longer
 * older on the rolled-back one.  Counted at issue, like heal_flips. */
void heal_stale(struct sim *s, uint64_t off, uint64_t len)
{
  if (!s->stale_pending)
    return;
  for (uint64_t b = off / BLOCK; b <= (off + len - 1) / BLOCK; b++) {
    if (!s->stale[b])
      continue;
    s->stale[b] = 0;
    if (--s->stale_pending == 0) {
      event(s,
            "ds%d holds no rolled-back block any more (op at %" PRIu64
            " len %" PRIu64 ")",
            s->stale_ds + 1, off, len);
      s->stale_ds = -1;
      return;
    }
  }
}
