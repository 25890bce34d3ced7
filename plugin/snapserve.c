/* crucible-c upstairs: serving a snapshot read-only (`snapshot=NAME`;
 * docs/DESIGN.md Semantics, "Serving a snapshot").
 *
 * Loop thread only.  Every connection is a snapshot reader (client.c:
 * HELLO role SNAPSHOT, SNAPSHOT open instead of EXTENT_STATES); when
 * start-up's CONNECT ends, up__snap_go_serve applies up__snap_serve_rule
 * (snapshot.c) to what they answered: the replicas that hold the
 * snapshot at one point serve it, every other one is named in one line
 * and not used.  Invariants: no frame that changes a region is ever sent
 * (no ACTIVATE, no reconcile, no extend levelling, no live repair: no
 * connection gets c->lr; heal.c, io.c, extend.c and snapshot.c refuse
 * their writes); only replicas whose record equals up->snap serve.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

void up__snap_have_of(const struct cl *c, struct up_snap_have *h)
{
  memset(h, 0, sizeof *h);
  if (c->state != CL_READY || !c->have_snap)
    h->kind = UP_SNAP_UNKNOWN;
  else if (c->snap_err == ENOENT)
    h->kind = UP_SNAP_LACKS;
  else if (c->snap_err == 0)
    *h = (struct up_snap_have){.kind = UP_SNAP_HAS,
                               .gen = c->snap.gen,
                               .flush = c->snap.flush,
                               .extent_count = c->snap.extent_count};
}

void up__snap_why_not(const struct upstairs *up, const struct cl *c,
                      const struct proto_snap_entry *ref, char *buf, size_t len)
{
  const char *name = up->cfg.snapshot;
  if (c->state != CL_READY)
    snprintf(buf, len, "downstairs %s: did not answer (%s)", c->name, c->why);
  else if (!c->have_snap || (c->snap_err && c->snap_err != ENOENT))
    snprintf(buf, len, "downstairs %s: cannot open snapshot %s: %s", c->name,
             name, c->have_snap ? log_strerror(c->snap_err) : "no answer");
  else if (c->snap_err == ENOENT)
    snprintf(buf, len, "downstairs %s: has no snapshot %s", c->name, name);
  else if (ref)
    snprintf(buf, len,
             "downstairs %s: holds snapshot %s at flush %llu gen %llu "
             "(%u extents), the others at flush %llu gen %llu (%u extents)",
             c->name, name, (unsigned long long) c->snap.flush,
             (unsigned long long) c->snap.gen, c->snap.extent_count,
             (unsigned long long) ref->flush, (unsigned long long) ref->gen,
             ref->extent_count);
  else
    snprintf(buf, len,
             "downstairs %s: holds snapshot %s at flush %llu gen %llu", c->name,
             name, (unsigned long long) c->snap.flush,
             (unsigned long long) c->snap.gen);
}

/* c serves the snapshot: ACTIVE without ACTIVATE (a reader takes no
 * generation), never live-repaired (nothing is written). */
static void up_snap_use(struct upstairs *up, struct cl *c)
{
  c->state = CL_ACTIVE;
  c->was_active = true;
  c->backoff_ms = 0;
  c->down_logged = false;
  c->ping_out = false;
  memcpy(c->inst, c->hello.instance, sizeof c->inst);
  c->inst_known = true;
  __atomic_add_fetch(&up->n_active, 1, __ATOMIC_SEQ_CST);
  up__ds_update(up, c);
}

/* Fewer than two replicas hold the snapshot at one point: the start
 * fails in one line naming what each one answered. */
static void up_snap_fail(struct upstairs *up, unsigned holders)
{
  char line[400], list[3 * 200] = "";
  size_t len = 0;

  for (int i = 0; i < UP_DOWNSTAIRS && len < sizeof list; i++) {
    up__snap_why_not(up, &up->cl[i], NULL, line, sizeof line);
    len += (size_t) snprintf(list + len, sizeof list - len, "%s%s",
                             i ? "; " : "", line + strlen("downstairs "));
  }
  /* Two holders that disagree: each holds it at its own point. */
  up__start_fail(up,
                 "snapshot %s: only %u of 3 downstairs hold it at one "
                 "point, 2 are needed (%s)",
                 up->cfg.snapshot, holders > 1 ? 1 : holders, list);
}

/* Leave CONNECT serving a snapshot: the replicas that hold it at one
 * point (up__snap_serve_rule, at least two) serve it; every other one is
 * named in one line and not used.  No ACTIVATE, no reconcile, no extend
 * levelling: a reader changes nothing anywhere. */
void up__snap_go_serve(struct upstairs *up)
{
  struct up_snap_have have[UP_DOWNSTAIRS];
  struct cl *ref, *named;
  char line[400];
  unsigned mask, holders = 0;
  int pick;

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    up__snap_have_of(&up->cl[i], &have[i]);
    holders += have[i].kind == UP_SNAP_HAS;
  }
  mask = up__snap_serve_rule(have, &pick);
  if (!mask) {
    up_snap_fail(up, holders);
    return;
  }
  ref = &up->cl[pick];
  up->snap = ref->snap;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    if (mask & (1u << i))
      continue;
    up__snap_why_not(up, c, &up->snap, line, sizeof line);
    log_error("%s: not used", line);
    /* One that lacks it or holds another never will: final.  One that
     * did not answer may come back holding it (up_snap_readmit). */
    cl_close(c, c->state == CL_READY, NULL);
  }
  if (up__check_agree(up, ref, &named) < 0)
    return;
  if (!named) {
    up__start_fail(up, "snapshot %s: no replica names a volume uuid",
                   up->cfg.snapshot);
    return;
  }
  up->region = ref->hello.region;
  memcpy(up->region.uuid, named->hello.region.uuid, PROTO_UUID_LEN);
  /* The snapshot's size: the live volume may have grown since. */
  up->region.extent_count = up->snap.extent_count;
  up->block_count = geom_blocks(&up->region);
  up->gen = up->snap.gen;
  up->flush_no = up->snap.flush + 1;
  /* The repair state, idle for good: no replica is ever a live-repair
   * target here (up_snap_use never calls up__lr_admit). */
  if (up__xs_init(up) < 0) {
    up__start_fail(up, "snapshot %s: out of memory", up->cfg.snapshot);
    return;
  }
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (mask & (1u << i))
      up_snap_use(up, &up->cl[i]);
  log_info("serving snapshot %s (flush %llu gen %llu) read-only from %u of 3 "
           "downstairs",
           up->cfg.snapshot, (unsigned long long) up->snap.flush,
           (unsigned long long) up->snap.gen, __builtin_popcount(mask));
  up__set_phase(up, UP_PH_RUNNING);
  up__ds_update_all(up);
}

/* Running a snapshot: a returner that holds the agreed record serves
 * again at once (nothing to repair: nobody writes); any other is not
 * used (one line per reason: it comes back at every reconnect). */
void up__snap_readmit(struct upstairs *up)
{
  struct up_snap_have have, want = {.kind = UP_SNAP_HAS,
                                    .gen = up->snap.gen,
                                    .flush = up->snap.flush,
                                    .extent_count = up->snap.extent_count};
  char line[400], why[sizeof up->cl[0].why];

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    if (c->state != CL_READY)
      continue;
    up__snap_have_of(c, &have);
    if (have.kind == UP_SNAP_HAS && have.gen == want.gen &&
        have.flush == want.flush && have.extent_count == want.extent_count) {
      log_info("downstairs %s: serves snapshot %s again", c->name,
               up->cfg.snapshot);
      up_snap_use(up, c);
      continue;
    }
    up__snap_why_not(up, c, &up->snap, line, sizeof line);
    /* The reason without "downstairs H:P: ", cut to what c->why holds
     * (up_refuse_rejoin compares it with the last one). */
    snprintf(why, sizeof why, "%s",
             line + strlen("downstairs ") + strlen(c->name) + 2);
    up__refuse_rejoin(c, -1, why);
    cl_close(c, false, NULL);
  }
}
