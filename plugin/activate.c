/* crucible-c upstairs: activation (see upstairs.h): the checks of each
 * HELLO_OK, the agreement of the ready replicas, the choice of uuid,
 * generation and key check value, ACTIVATE, readmission of a returning
 * downstairs, and the start-up state machine's step.
 *
 * Start-up, on the loop thread, as a small state machine driven by client
 * events and a 1 s tick (upstairs.c: on_tick):
 *   CONNECT     connect to all three (retrying refused connections), HELLO,
 *               EXTENT_STATES.  Each HELLO_OK is checked at once (encrypted
 *               flag, key check value), so a wrong key never activates.
 *               Ends when all three are READY, or at `timeout` with >= 2.
 *   ACTIVATING  agreement (uuid, geometry), generation, the reconciliation
 *               hook, ACTIVATE to the ready ones.  Ends when all answered
 *               (>= 2 active) or at `timeout`.
 *   RUNNING     IO (jobs.c, io.c); the tick checks job timeouts and pings.
 * up_start() (a caller thread) waits on start_cond for the outcome.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

/* Refuse c's rejoin for why (its close reason), logged once per reason
 * (it comes back at every reconnect).  Returns err. */
int up__refuse_rejoin(struct cl *c, int err, const char *why)
{
  if (strcmp(c->why, why) != 0)
    log_error("downstairs %s: %s: not admitted", c->name, why);
  snprintf(c->why, sizeof c->why, "%s", why);
  return err;
}

/* A downstairs coming back to a running volume must serve the same
 * region with the same key.  0; -1: not now (retried with backoff, the
 * operator may fix it); -ESTALE: a newer generation took it (final). */
static int up_check_rejoin(struct upstairs *up, struct cl *c)
{
  const struct proto_hello_ok *h = &c->hello;
  const struct proto_region *a = &up->region, *b = &h->region;

  /* A region of no volume yet (uuid zero) takes ours at ACTIVATE.  One
   * with fewer extents missed an extend: it is extended at admission
   * (extend.c).  One with more holds a half-done extend the volume does
   * not have: an extend to its size, or a restart, levels them. */
  if ((!geom_uuid_is_zero(b->uuid) &&
       memcmp(a->uuid, b->uuid, PROTO_UUID_LEN) != 0) ||
      a->block_size != b->block_size || a->extent_size != b->extent_size ||
      a->encrypted != b->encrypted)
    return up__refuse_rejoin(c, -1, "now serves another region");
  /* A snapshot reader: the live volume may have grown and activated
   * newer generations since; what counts is the snapshot's record
   * (up_snap_readmit). */
  if (up_snapshot_mode(up))
    return h->has_kcv && up->key &&
                   crypt_kcv_check(up->key, h->region.uuid, h->kcv.nonce,
                                   h->kcv.tag)
               ? up__refuse_rejoin(c, -1, "key does not match")
               : 0;
  if (b->extent_count > a->extent_count) {
    char why[128];
    snprintf(why, sizeof why,
             "has %u extents, the volume %u (an extend "
             "that did not finish): extend the volume to its size or "
             "restart",
             b->extent_count, a->extent_count);
    return up__refuse_rejoin(c, -1, why);
  }
  if (h->has_kcv && up->key &&
      crypt_kcv_check(up->key, h->region.uuid, h->kcv.nonce, h->kcv.tag))
    return up__refuse_rejoin(c, -1, "key does not match");
  if (h->highest_gen > up->gen) {
    char why[96];
    snprintf(why, sizeof why, "accepted generation %llu above ours (%llu)",
             (unsigned long long) h->highest_gen, (unsigned long long) up->gen);
    return up__refuse_rejoin(c, -ESTALE, why);
  }
  return 0;
}

/* Another downstairs connected now that reported c's instance id (the
 * same region reached through two addresses), or NULL.  An all-zero id
 * (none reported) matches nothing. */
static struct cl *up_same_instance(struct upstairs *up, struct cl *c)
{
  static const uint8_t zero[PROTO_UUID_LEN];

  if (memcmp(c->hello.instance, zero, sizeof zero) == 0)
    return NULL;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *o = &up->cl[i];
    if (o != c && o->have_hello && o->state >= CL_AUTH &&
        o->state <= CL_ACTIVE &&
        memcmp(o->hello.instance, c->hello.instance, PROTO_UUID_LEN) == 0)
      return o;
  }
  return NULL;
}

/* Checks on one HELLO_OK, at once: encrypted flag and key check value.
 * 0, 1 (not now), -1 after failing the start, or up_check_rejoin's. */
int up__on_hello(struct upstairs *up, struct cl *c)
{
  const struct proto_hello_ok *h = &c->hello;
  struct cl *same = up_same_instance(up, c);
  enum up_phase ph = up__phase(up);

  if (same && ph == UP_PH_RUNNING) {
    char why[sizeof c->why];
    snprintf(why, sizeof why, "same region as downstairs %.80s", same->name);
    return up__refuse_rejoin(c, -1, why);
  }
  if (same) {
    up__start_fail(up,
                   "downstairs %s and %s are the same region (one "
                   "replica under two addresses): give three different "
                   "replicas",
                   same->name, c->name);
    return -1;
  }
  if (ph == UP_PH_RUNNING)
    return up_check_rejoin(up, c);
  if (ph != UP_PH_CONNECT) {
    if (ph != UP_PH_ACTIVATING && ph != UP_PH_RECONCILE)
      return -1; /* failed or stopping: nothing to say */
    if (!c->logged_late)
      log_warn("downstairs %s answered during activation: admitted (with "
               "live repair) once the volume runs",
               c->name);
    c->logged_late = true;
    return 1;
  }
  if (h->region.encrypted && !up->cfg.have_key) {
    up__start_fail(up,
                   "downstairs %s: region is encrypted but the upstairs "
                   "has no key: add key=+FILE (the volume's key)",
                   c->name);
    return -1;
  }
  if (!h->region.encrypted && up->cfg.have_key) {
    up__start_fail(up,
                   "downstairs %s: region is not encrypted but the "
                   "upstairs has a key: remove key=",
                   c->name);
    return -1;
  }
  if (h->has_kcv && up->key &&
      crypt_kcv_check(up->key, h->region.uuid, h->kcv.nonce, h->kcv.tag)) {
    up__start_fail(up, "key does not match this volume (downstairs %s)",
                   c->name);
    return -1;
  }
  return 0;
}

/* All ready downstairs must serve the same region: one geometry and
 * encrypted flag, and one volume uuid among those that have one (a region
 * made by `create` without -u has none and adopts the volume's).  *named
 * is the first ready one that has a uuid, or NULL. */
int up__check_agree(struct upstairs *up, struct cl *ref, struct cl **named)
{
  const struct proto_region *a = &ref->hello.region;

  *named = NULL;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    const struct proto_region *b = &c->hello.region;
    const char *what = NULL;

    if (c->state != CL_READY)
      continue;
    if (!geom_uuid_is_zero(b->uuid) && !*named)
      *named = c;
    if (c == ref)
      continue;
    /* The extent count may differ: levelled up to the largest after
     * ACTIVATE (extend.c). */
    if (a->block_size != b->block_size || a->extent_size != b->extent_size)
      what = "region geometry";
    else if (a->encrypted != b->encrypted)
      what = "encrypted flag";
    if (what) {
      up__start_fail(up, "downstairs %s: %s differs from %s", c->name, what,
                     ref->name);
      return -1;
    }
  }
  for (int i = 0; *named && i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    const uint8_t *u = c->hello.region.uuid;

    if (c->state == CL_READY && !geom_uuid_is_zero(u) &&
        memcmp(u, (*named)->hello.region.uuid, PROTO_UUID_LEN) != 0) {
      up__start_fail(up,
                     "downstairs %s: region uuid differs from %s: "
                     "create all three with the same -u UUID, or without -u",
                     c->name, (*named)->name);
      return -1;
    }
  }
  return 0;
}

/* The volume's uuid: the one its regions name (named), or a new random
 * (version 4) uuid when none has one yet.  0 or -1 after failing the
 * start. */
static int up_pick_uuid(struct upstairs *up, const struct cl *named)
{
  uint8_t *u = up->region.uuid;
  char text[37];

  if (named) {
    memcpy(u, named->hello.region.uuid, PROTO_UUID_LEN);
    return 0;
  }
  if (crypt_random(u, PROTO_UUID_LEN) < 0) {
    up__start_fail(up, "no random bytes for a new volume uuid");
    return -1;
  }
  u[6] = (uint8_t) ((u[6] & 0x0f) | 0x40);
  u[8] = (uint8_t) ((u[8] & 0x3f) | 0x80);
  geom_uuid_format(u, text);
  log_notice("new volume: uuid %s (no region had one yet)", text);
  return 0;
}

/* Send ACTIVATE a to c, with our uuid when its region has none yet; c
 * is activating from now on (closed if the write failed). */
static void up_send_activate(struct upstairs *up, struct cl *c,
                             struct proto_activate *a)
{
  uint8_t buf[PROTO_ACTIVATE_LEN];

  if (geom_uuid_is_zero(c->hello.region.uuid)) {
    a->set_uuid = 1;
    memcpy(a->uuid, up->region.uuid, PROTO_UUID_LEN);
  }
  c->state = CL_ACTIVATING;
  if (cl_send_copy(c, buf, proto_put_activate(buf, a)) < 0)
    cl_close(c, false, "write failed");
}

/* Pick the generation and first flush number from every ready replica.
 * 0 or -1 after failing the start. */
static int up_pick_gen(struct upstairs *up)
{
  uint64_t max_gen = 0, max_flush = 0;
  const char *who = "?";

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    if (c->state != CL_READY)
      continue;
    if (c->hello.highest_gen >= max_gen) {
      max_gen = c->hello.highest_gen;
      who = c->name;
    }
    for (uint32_t e = 0; e < c->nstates; e++) {
      struct proto_extent_state s;
      proto_extent_state_get(c->states + (size_t) e * PROTO_EXTENT_STATE_LEN,
                             &s);
      if (s.gen > max_gen) {
        max_gen = s.gen;
        who = c->name;
      }
      if (s.flush > max_flush)
        max_flush = s.flush;
    }
  }
  if (up->cfg.gen && up->cfg.gen <= max_gen) {
    up__start_fail(up,
                   "gen=%llu is not above generation %llu already used "
                   "(downstairs %s)",
                   (unsigned long long) up->cfg.gen,
                   (unsigned long long) max_gen, who);
    return -1;
  }
  up->gen = up->cfg.gen ? up->cfg.gen : max_gen + 1;
  if (up->gen >= (1ull << 32)) {
    up__start_fail(up, "generation numbers exhausted (%llu)",
                   (unsigned long long) max_gen);
    return -1;
  }
  up->flush_no = max_flush + 1;
  return 0;
}

/* Key check value to send with ACTIVATE: an existing one, or a new one. */
static int up_pick_kcv(struct upstairs *up, struct proto_kcv *kcv, bool *any)
{
  *any = false;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (up->cl[i].state == CL_READY && up->cl[i].hello.has_kcv) {
      *kcv = up->cl[i].hello.kcv;
      *any = true;
      return 0;
    }
  if (!up->key)
    return 0;
  if (crypt_kcv_make(up->key, up->region.uuid, kcv->nonce, kcv->tag) < 0) {
    up__start_fail(up, "cannot make the key check value");
    return -1;
  }
  return 0;
}

/* Leave CONNECT: check, choose generation, activate the ready ones. */
static void up_go_activate(struct upstairs *up)
{
  struct proto_kcv kcv = {{0}, {0}};
  struct cl *ref = NULL, *named;
  bool have_kcv;

  for (int i = 0; i < UP_DOWNSTAIRS && !ref; i++)
    if (up->cl[i].state == CL_READY)
      ref = &up->cl[i];
  if (up__check_agree(up, ref, &named) < 0)
    return;
  up->region = ref->hello.region;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (up->cl[i].state == CL_READY &&
        up->cl[i].hello.region.extent_count > up->region.extent_count)
      up->region.extent_count = up->cl[i].hello.region.extent_count;
  up->block_count = geom_blocks(&up->region);
  if (up_pick_uuid(up, named) < 0 || up__state_check(up) < 0 ||
      up_pick_gen(up) < 0 || up_pick_kcv(up, &kcv, &have_kcv) < 0)
    return;
  up->activate_ms = uv_now(&up->loop);
  up__set_phase(up, UP_PH_ACTIVATING);
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    struct proto_activate a = {.gen = up->gen, .kcv = kcv};

    if (c->state != CL_READY) {
      log_error("downstairs %s is missing (%s): activating without it; it "
                "will be live-repaired when it returns",
                c->name, c->why);
      cl_close(c, false, NULL);
      continue;
    }
    a.set_kcv = up->key && !c->hello.has_kcv;
    up_send_activate(up, c, &a);
  }
  log_info("activating generation %llu", (unsigned long long) up->gen);
}

/* Start-up failure message listing who did not make it. */
static void up_fail_missing(struct upstairs *up, unsigned got,
                            enum cl_state want)
{
  char list[400] = "";
  size_t len = 0;

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    if (c->state == want || len >= sizeof list)
      continue;
    len += (size_t) snprintf(list + len, sizeof list - len, "%s%s (%s)",
                             len ? ", " : "", c->name, c->why);
  }
  up__start_fail(up, "only %u of 3 downstairs answered within %u s: %s", got,
                 up->cfg.timeout, list);
}

/* Running: activate every downstairs that came back and is READY with
 * our generation (it is live-repaired once active). */
static void up_readmit(struct upstairs *up)
{
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    struct proto_activate a = {.gen = up->gen};

    if (c->state != CL_READY)
      continue;
    if (up->key && !c->hello.has_kcv &&
        crypt_kcv_make(up->key, up->region.uuid, a.kcv.nonce, a.kcv.tag) == 0)
      a.set_kcv = 1;
    up_send_activate(up, c, &a);
  }
}

/* c answered ACTIVATE_OK: active, and its outage (if any) is over. */
static void up_set_active(struct cl *c)
{
  c->state = CL_ACTIVE;
  c->was_active = true;
  c->backoff_ms = 0;
  c->down_logged = false;
  c->ping_out = false;
}

/* ACTIVATE_OK from c: count it during start-up; live-repair it later. */
void up__admit(struct upstairs *up, struct cl *c)
{
  up_set_active(c);
  up__lr_admit(up, c);
}

void up__on_activated(struct upstairs *up, struct cl *c)
{
  if (up__phase(up) == UP_PH_RUNNING) {
    /* Smaller than the volume, or an extend runs: extend.c admits it
     * once it is levelled. */
    if (!up__extend_admit(up, c))
      up__admit(up, c);
    return;
  }
  up_set_active(c);
  memcpy(c->inst, c->hello.instance, sizeof c->inst); /* see up__lr_admit */
  c->inst_known = true;
  __atomic_add_fetch(&up->n_active, 1, __ATOMIC_SEQ_CST);
  up__handshake_step(up);
  up__ds_update(up, c);
}

/* Advance start-up after any client event or tick (loop thread). */
void up__handshake_step(struct upstairs *up)
{
  enum up_phase ph = up__phase(up);
  uint64_t now = uv_now(&up->loop), tmo = up->cfg.timeout * 1000ull;
  unsigned ready = 0, pending = 0, active = 0, refused = 0;

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    enum cl_state s = up->cl[i].state;
    ready += s == CL_READY;
    pending += s == CL_ACTIVATING;
    active += s == CL_ACTIVE;
    refused += s != CL_READY && up->cl[i].refused;
  }
  if (ph == UP_PH_CONNECT) {
    /* Every one not ready refused outright: missing, not slow. */
    bool refused_only = ready + refused == UP_DOWNSTAIRS &&
                        now - up->start_ms >= UP_REFUSED_GRACE_MS;
    if (ready == UP_DOWNSTAIRS ||
        ((now - up->start_ms >= tmo || refused_only) && ready >= 2)) {
      if (up_snapshot_mode(up))
        up__snap_go_serve(up);
      else
        up_go_activate(up);
    } else if (now - up->start_ms >= tmo)
      up_fail_missing(up, ready, CL_READY);
  } else if (ph == UP_PH_RUNNING) {
    if (up_snapshot_mode(up))
      up__snap_readmit(up);
    else
      up_readmit(up);
  } else if (ph == UP_PH_ACTIVATING) {
    if (pending && now - up->activate_ms >= tmo && active >= 2) {
      for (int i = 0; i < UP_DOWNSTAIRS; i++)
        if (up->cl[i].state == CL_ACTIVATING) {
          log_error("downstairs %s did not answer ACTIVATE within %u s: "
                    "continuing without it",
                    up->cl[i].name, up->cfg.timeout);
          cl_close(&up->cl[i], false, "activation timed out");
        }
      pending = 0;
    }
    if (pending == 0 && active >= 2) {
      if (!up__extend_level_start(up)) /* replicas of one size first */
        up__reconcile_start(up);
    } else if (pending == 0 || now - up->activate_ms >= tmo) {
      up_fail_missing(up, active, CL_ACTIVE);
    }
  }
}
