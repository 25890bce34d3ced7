/* crucible-sim: the faults and the check after a crash of nbdkit. */
#include "sim.h"

/* ---- faults ----------------------------------------------------------- */

/* Xor one byte of a random written block of replica i (stopped) at the
 * extent file offset the region layout gives; false if none qualifies. */
bool flip_block(struct sim *s, int i)
{
  uint64_t nblk = s->size / BLOCK, per = s->extent_bytes / BLOCK;
  for (int tries = 0; tries < 200; tries++) {
    uint64_t b = rng_range(&s->rfault, 0, nblk - 1);
    unsigned at = rng_range(&s->rfault, 0, BLOCK - 1);
    if (s->flipped[b] || s->blk_mod[b] + MAX_INFLIGHT >= s->seq ||
        !model_block_written(&s->M, b))
      continue;
    char rel[EXT_PATH_MAX], path[700];
    ext_path(b / per, rel);
    snprintf(path, sizeof path, "%s/%s", s->ds_dir[i], rel);
    off_t off = (off_t) (b % per) * BLOCK + at;
    uint8_t c;
    int fd = open(path, O_RDWR);
    if (fd < 0 || pread(fd, &c, 1, off) != 1)
      fail(s, "flip: %s: %s", path, strerror(errno));
    c ^= 0x5a;
    if (pwrite(fd, &c, 1, off) != 1)
      fail(s, "flip: %s: %s", path, strerror(errno));
    close(fd);
    s->flipped[b] = FLIP_PENDING;
    s->flips_pending++;
    s->corrupt_ds = i;
    s->flips_done++;
    event(s,
          "fault flip ds%d lba %" PRIu64 " (%s offset %jd) last "
          "touched by op %" PRIu64,
          i + 1, b, rel, (intmax_t) off, s->blk_mod[b]);
    return true;
  }
  event(s, "fault flip ds%d: no written block untouched lately: skipped",
        i + 1);
  return false;
}

/* A write, trim or zero of [off, off+len) is issued: every flipped block
 * it touches will be rewritten on every replica (sim.h), and the corrupt
 * replica is no longer special once none of its flips is left.  Counted
 * at issue, not at acknowledgement, so that the fault targets replay from
 * the seed (which ops are acked by a given op number depends on timing). */
void heal_flips(struct sim *s, uint64_t off, uint64_t len)
{
  if (!s->flips_pending)
    return;
  for (uint64_t b = off / BLOCK; b <= (off + len - 1) / BLOCK; b++) {
    if (s->flipped[b] != FLIP_PENDING)
      continue;
    s->flipped[b] = FLIP_HEALED;
    event(s,
          "flipped lba %" PRIu64 " rewritten (op at %" PRIu64 " len %" PRIu64
          ")",
          b, off, len);
    if (--s->flips_pending == 0) {
      event(s, "ds%d holds no unhealed flip", s->corrupt_ds + 1);
      s->corrupt_ds = -1;
      return;
    }
  }
}

/* Stop downstairs i cleanly (SIGTERM: it must exit 0) and wait until the
 * upstairs sees it gone. */
void ds_stop_clean(struct sim *s, int i)
{
  event(s, "fault SIGTERM ds%d pid %d", i + 1, s->ds[i].pid);
  int st = proc_stop(&s->ds[i], SIGTERM, STOP_SECS);
  if (st != 0)
    fail(s, "ds%d did not exit cleanly on SIGTERM (status %d)", i + 1, st);
  wait_not_active(s, i, 2.0 * s->o.timeout + 10);
}

/* The downstairs back from an away fault: once the stats file shows it
 * active, log how long (seconds, ops) its resync took and what the repair
 * reports.  Looks at most every 0.2 s; with wait, waits (bounded, no new
 * ops) until it is active. */
void away_check(struct sim *s, bool wait)
{
  char phase[32] = "", st[3][32] = {"", "", ""}, rep[256];
  int i = s->away_ds;
  if (i < 0 || (!wait && now() < s->away_next))
    return;
  s->away_next = now() + 0.2;
  double end = now() + HEALTH_SECS;
  while (!read_stats(s, phase, st) || strcmp(st[i], "active") != 0) {
    if (!wait)
      return;
    if (now() > end)
      fail(s, "ds%d not active %d s after it returned from away (state %s)",
           i + 1, HEALTH_SECS, st[i]);
    pump(s, 50);
  }
  read_repair(s, i, rep, sizeof rep);
  event(s,
        "away: ds%d active again %.1f s and %" PRIu64 " ops after its "
        "return%s; repair %s",
        i + 1, now() - s->away_t, s->seq - s->away_seq, wait ? " (waited)" : "",
        rep);
  s->away_ds = -1;
}

/* Downstairs i is back from an away (or rollback) fault: away_check
 * logs its resync and the next fault waits until it is active. */
void away_back(struct sim *s, int i)
{
  s->away_ds = i;
  s->away_t = now();
  s->away_next = now() + 0.2;
  s->away_seq = s->seq;
  event(s, "away: ds%d back", i + 1);
}

/* Take downstairs i down: kill -9 (and wait until the upstairs sees it)
 * or SIGSTOP. */
void ds_down(struct sim *s, int i, bool kill9)
{
  if (kill9) {
    event(s, "fault kill -9 ds%d pid %d", i + 1, s->ds[i].pid);
    kill(s->ds[i].pid, SIGKILL);
    waitpid(s->ds[i].pid, NULL, 0);
    s->ds[i].pid = 0;
    wait_not_active(s, i, 2.0 * s->o.timeout + 10);
  } else {
    event(s, "fault SIGSTOP ds%d pid %d", i + 1, s->ds[i].pid);
    kill(s->ds[i].pid, SIGSTOP);
    s->ds[i].stopped = true;
  }
}

/* Bring downstairs i back: restart it, or SIGCONT (after the upstairs
 * faulted it when long_stop). */
void ds_up(struct sim *s, int i)
{
  if (s->ds[i].pid == 0) {
    ds_start(s, i);
    return;
  }
  if (s->long_stop)
    wait_not_active(s, i, 4.0 * s->o.timeout + 30);
  event(s, "SIGCONT ds%d pid %d%s", i + 1, s->ds[i].pid,
        s->long_stop ? " (after it was faulted)" : "");
  kill(s->ds[i].pid, SIGCONT);
  s->ds[i].stopped = false;
}

/* After a crash: read every range L touches once, check each byte is one
 * of its candidates, adopt what was read into M. */
void check_chunk(struct sim *s, uint64_t off, uint64_t n, const uint8_t *got)
{
  static uint8_t ok[CHUNK], closed[CHUNK], cand[CHUNK];
  static uint32_t match[CHUNK];
  memset(ok, 0, n);
  memset(closed, 0, n);
  for (size_t k = s->L.n; k-- > s->L.head;) { /* newest first */
    struct uentry *e = &s->L.e[k];
    uint64_t a = max64(off, e->off), b = min64(off + n, e->off + e->len);
    if (a >= b)
      continue;
    content(e->wid, a, b - a, cand);
    for (uint64_t i = a - off, j = 0; i < b - off; i++, j++) {
      if (closed[i])
        continue;
      if (!ok[i] && cand[j] == got[i]) {
        ok[i] = 1;
        match[i] = e->wid;
      }
      /* Nothing older may show than a durable entry or, unless lenient,
       * an acknowledged one. */
      closed[i] = e->durable || (!s->o.lenient && !e->inflight);
    }
  }
  model_expect(&s->D, off, n, cand);
  for (uint64_t i = 0; i < n; i++) {
    if (!ok[i] && !closed[i] && cand[i] == got[i]) {
      ok[i] = 1;
      match[i] = model_wid_at(&s->D, off + i);
    }
    if (!ok[i]) {
      explain_byte(s, off + i, got[i]);
      fail(s,
           "MISMATCH after nbdkit crash: byte %" PRIu64 " (block %" PRIu64
           ") is none of its candidates",
           off + i, (off + i) / BLOCK);
    }
  }
  for (uint64_t i = 0; i < n;) {
    uint64_t j = i + 1;
    while (j < n && match[j] == match[i])
      j++;
    model_apply(&s->M, off + i, j - i, match[i]);
    i = j;
  }
}

int cmp_entry(const void *a, const void *b)
{
  const struct uentry *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* Check every range L touches (merged), chunk by chunk, on connection 0. */
void crash_check(struct sim *s)
{
  size_t n = s->L.n - s->L.head;
  struct uentry *r = xmalloc(n * sizeof *r);
  uint8_t *buf = xmalloc(CHUNK);
  uint64_t total = 0;
  memcpy(r, s->L.e + s->L.head, n * sizeof *r);
  qsort(r, n, sizeof *r, cmp_entry);
  for (size_t i = 0; i < n;) {
    uint64_t a = r[i].off, b = r[i].off + r[i].len;
    for (i++; i < n && r[i].off <= b; i++)
      b = max64(b, r[i].off + r[i].len);
    for (uint64_t o = a; o < b; o += CHUNK) {
      uint64_t len = min64(CHUNK, b - o);
      if (nbd_pread(s->h[0], buf, len, o, 0) < 0)
        fail(s, "read after nbdkit crash, off %" PRIu64 " len %" PRIu64 ": %s",
             o, len, nbd_get_error());
      check_chunk(s, o, len, buf);
      total += len;
    }
  }
  event(s,
        "after crash: %zu unflushed writes, %" PRIu64 " bytes checked "
        "against their candidates and adopted",
        n, total);
  s->crash_checked += total;
  free(r);
  free(buf);
}

/* kill -9 nbdkit with IO in flight, restart it (after downstairs ds, if
 * >= 0, which was down), reconnect, check. */
void crash_nbdkit(struct sim *s, int ds)
{
  event(s, "fault kill -9 nbdkit pid %d (%u ops in flight)", s->nbdkit.pid,
        inflight(s));
  s->crashing = true;
  kill(s->nbdkit.pid, SIGKILL);
  waitpid(s->nbdkit.pid, NULL, 0);
  s->nbdkit.pid = 0;
  for (int k = 0; k < 20 && inflight(s); k++)
    pump(s, 50);
  conns_close(s);
  for (int i = 0; i < MAX_INFLIGHT; i++) {
    struct op *o = &s->slot[i];
    if (o->used && !o->done)
      o->err = ENOTCONN;
    if (o->used)
      retire(s, o);
  }
  s->crashing = false;
  if (ds >= 0)
    ds_start(s, ds);
  nbdkit_start(s, false);
  crash_check(s);
  /* Reconciliation may have copied a flipped block: read every block ever
   * flipped now, not only if the random stream happens to. */
  for (uint64_t b = 0; b < s->size / BLOCK; b++)
    if (s->flipped[b])
      issue_read(s, b % NCONN, b * BLOCK, BLOCK);
  flush_all(s);
  model_copy(&s->D, &s->M);
  ulog_clear(&s->L);
}

/* Flush, close, SIGTERM nbdkit then the downstairs; all must exit 0. */
void stop_all(struct sim *s, bool downstairs)
{
  flush_all(s);
  conns_close(s);
  int st = proc_stop(&s->nbdkit, SIGTERM, STOP_SECS);
  if (st != 0)
    fail(s, "nbdkit did not exit cleanly on SIGTERM (status %d)", st);
  for (int i = 0; downstairs && i < 3; i++) {
    st = proc_stop(&s->ds[i], SIGTERM, STOP_SECS);
    if (st != 0)
      fail(s, "ds%d did not exit cleanly on SIGTERM (status %d)", i + 1, st);
  }
  event(s, "stopped cleanly");
}

/* Fault restart: stop everything cleanly and start it again. */
void restart_all(struct sim *s)
{
  event(s, "fault clean restart of everything");
  stop_all(s, true);
  for (int i = 0; i < 3; i++)
    ds_start(s, i);
  nbdkit_start(s, false);
}

/* The next fault class of the current round (a seeded permutation of
 * the enabled classes, away twice). */
enum fclass next_class(struct sim *s)
{
  if (s->round_pos == s->round_len) {
    s->round_len = 0;
    for (int c = 0; c < NFAULT; c++)
      for (int k = 0; k < (c == F_AWAY ? 2 : 1); k++)
        if (!(s->o.disabled & 1u << c))
          s->round[s->round_len++] = c;
    for (int i = s->round_len - 1; i > 0; i--) {
      int j = rng_range(&s->rfault, 0, i), t = s->round[i];
      s->round[i] = s->round[j];
      s->round[j] = t;
    }
    s->round_pos = 0;
  }
  return s->round[s->round_pos++];
}

void sim_grow(struct sim *s, uint64_t size)
{
  uint64_t ob = s->size / BLOCK, nb = size / BLOCK;
  uint64_t *mod = realloc(s->blk_mod, nb * sizeof *mod);
  uint8_t *fl = realloc(s->flipped, nb), *st = NULL, *ss = NULL;
  if (mod)
    s->blk_mod = mod;
  if (fl)
    s->flipped = fl;
  st = realloc(s->stale, nb);
  if (st)
    s->stale = st;
  ss = realloc(s->snap_stale, nb);
  if (ss)
    s->snap_stale = ss;
  if (!mod || !fl || !st || !ss)
    fail(s, "out of memory growing to %" PRIu64 " bytes", size);
  memset(s->blk_mod + ob, 0, (nb - ob) * sizeof *mod);
  memset(s->flipped + ob, 0, nb - ob);
  memset(s->stale + ob, 0, nb - ob);
  memset(s->snap_stale + ob, 0, nb - ob);
  model_grow(&s->M, size);
  model_grow(&s->D, size);
  event(s, "volume grew from %" PRIu64 " to %" PRIu64 " bytes", s->size, size);
  s->size = size;
  s->o.extent_count = (unsigned) (size / s->extent_bytes);
  s->extends++;
}

/* Every region.json must say the volume's extent count (levelled). */
static void check_counts(struct sim *s)
{
  for (int i = 0; i < 3; i++)
    if (region_count(s, i) != s->o.extent_count)
      fail(s, "ds%d has %u extents, the volume %u", i + 1, region_count(s, i),
           s->o.extent_count);
}

void admin_crash(struct sim *s, char *const argv[], const char *log,
                 uint64_t max_us)
{
  pid_t pid = spawn(s, argv, log);
  usleep((useconds_t) rng_range(&s->rfault, 0, max_us));
  s->crashing = true;
  kill(s->nbdkit.pid, SIGKILL);
  waitpid(s->nbdkit.pid, NULL, 0);
  s->nbdkit.pid = 0;
  wait_exit(pid, 60);
  conns_close(s);
  s->crashing = false;
}

/* Fault extend (sim.h): grow by one or two extents, nothing in flight;
 * ds >= 0: that downstairs is down meanwhile (levelled at its return);
 * crash: nbdkit killed -9 0-250 ms after the command is sent (an
 * extend of one or two extents takes 20-200 ms here: before, during or
 * after it). */
static void extend_volume(struct sim *s, int ds, bool crash)
{
  /* Grown past 4x (and 16 extents) only the same size is asked: a long
   * soak keeps its final read and memory bounded. */
  bool cap =
      s->o.extent_count >= 16 && s->o.extent_count >= 4 * s->extent_count0;
  uint64_t want =
      s->size + (cap ? 0 : rng_range(&s->rfault, 1, 2)) * s->extent_bytes;
  char size[32], log[600];
  snprintf(size, sizeof size, "%" PRIu64, want);
  snprintf(log, sizeof log, "%s/admin.log", s->o.dir);
  char *argv[] = {s->o.admin_bin, "-s", s->asock, "extend", size, NULL};
  drain(s);
  if (ds >= 0)
    ds_down(s, ds, true);
  event(s, "fault extend to %" PRIu64 " bytes%s%s", want,
        ds >= 0 ? " with a downstairs down" : "",
        crash ? ", nbdkit killed -9 meanwhile" : "");
  if (!crash) {
    if (run_cmd(s, argv, log, 180) != 0) {
      tail_file(log, 5);
      fail(s, "crucible-admin extend %s failed", size);
    }
    if (want != s->size)
      sim_grow(s, want);
    conns_close(s);
    for (int c = 0; c < NCONN; c++)
      conn_open(s, c);
    if (ds >= 0)
      ds_up(s, ds);
    else
      check_counts(s);
    return;
  }
  admin_crash(s, argv, log, 250000);
  if (ds >= 0)
    ds_start(s, ds);
  s->size_alt = want;
  nbdkit_start(s, false);
  s->size_alt = 0;
  event(s, "after the crash: %" PRIu64 " bytes", s->size);
  check_counts(s);
  crash_check(s); /* as crash_nbdkit: what was acked but not flushed */
  flush_all(s);
  model_copy(&s->D, &s->M);
  ulog_clear(&s->L);
}

/* Start the next fault (the volume healthy first). */
void fault_begin(struct sim *s)
{
  s->fc = next_class(s);
  int ds = rng_range(&s->rfault, 0, 2);
  bool kill9 = rng_range(&s->rfault, 0, 1);
  s->long_stop = rng_range(&s->rfault, 0, 1);
  uint64_t dur = rng_range(&s->rfault, 20, 300);
  uint64_t short_dur = rng_range(&s->rfault, 3, 60);
  if (special_ds(s) >= 0)
    ds = special_ds(s); /* never a second replica down, corrupt or stale */
  away_check(s, true);
  wait_healthy(s);
  s->nfaults[s->fc]++;
  s->fds = ds;
  switch (s->fc) {
  case F_KILL_DS: ds_down(s, ds, true); break;
  case F_STOP_DS: ds_down(s, ds, false); break;
  case F_FLIP:
    ds_down(s, ds, kill9);
    flip_block(s, ds);
    break;
  case F_KILL_NBDKIT: crash_nbdkit(s, -1); return;
  case F_DOWN_CRASH: /* a short outage, then nbdkit dies (fault_tick) */
    ds_down(s, ds, true);
    dur = short_dur;
    /* Half the time no flush in between: the stale replica's extents then
     * carry the same numbers as the others' (only versions tell). */
    s->no_flush = kill9;
    event(s, "down-crash outage of %" PRIu64 " ops%s", dur,
          s->no_flush ? ", no flushes" : "");
    break;
  case F_RESTART: restart_all(s); return;
  case F_AWAY: /* a short outage: resync what changed (fault_tick) */
    if (kill9) {
      ds_down(s, ds, true);
    } else {
      ds_stop_clean(s, ds);
      s->away_clean++;
    }
    dur = rng_range(&s->rfault, 1, 300);
    event(s, "away: ds%d for %" PRIu64 " ops", ds + 1, dur);
    break;
  case F_EXTEND: /* grow now; a third degraded, a third crashing */
    switch (rng_range(&s->rfault, 0, 2)) {
    case 0: extend_volume(s, -1, false); break;
    case 1: extend_volume(s, ds, false); break;
    default: extend_volume(s, -1, true); break;
    }
    return;
  case F_SNAPSHOT: snap_fault(s); return; /* snap.c */
  case F_ROLLBACK: /* copy now, restore after dur ops (rollback.c) */
    rollback_copy(s, ds);
    event(s, "rollback: ds%d put back to the copy after %" PRIu64 " ops",
          ds + 1, dur);
    break;
  }
  if (s->ds[ds].stopped && !s->long_stop) {
    /* A short SIGSTOP ends well before the upstairs' timeout would fault
     * it: SIGCONT after 0.1..2 s with only the ops already in flight
     * (new ones are slow then: flushes wait for the stopped replica, so
     * counting ops would outlast the timeout). */
    double end = now() + short_dur / 30.0;
    while (now() < end)
      pump(s, 20);
    ds_up(s, ds);
    return;
  }
  s->fault_active = true;
  s->fault_end = s->seq + dur;
}

void fault_schedule(struct sim *s)
{
  s->next_fault = s->seq + rng_range(&s->rfault, 50, 400);
}

/* Called before each op of the stream: fire or end faults due now. */
void fault_tick(struct sim *s)
{
  if ((s->o.disabled & ((1u << NFAULT) - 1)) == (1u << NFAULT) - 1)
    return; /* every class disabled */
  away_check(s, false);
  if (s->fault_active && s->seq >= s->fault_end) {
    s->no_flush = false;
    if (s->fc == F_DOWN_CRASH)
      crash_nbdkit(s, s->fds);
    else if (s->fc == F_ROLLBACK)
      rollback_restore(s, s->fds);
    else
      ds_up(s, s->fds);
    if (s->fc == F_AWAY)
      away_back(s, s->fds);
    s->fault_active = false;
    fault_schedule(s);
  } else if (!s->fault_active && s->seq >= s->next_fault) {
    fault_begin(s);
    if (!s->fault_active)
      fault_schedule(s);
  }
}
