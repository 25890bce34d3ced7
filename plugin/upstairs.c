/* crucible-c upstairs: life cycle and activation (see upstairs.h).
 *
 * Start-up, on the loop thread, as a small state machine driven by client
 * events and a 1 s tick:
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

int up_debug_io, up_debug_net, up_debug_repair;

/* Deadline secs from now on CLOCK_MONOTONIC (the condvars' clock). */
int up__deadline(struct upstairs *up, struct timespec *ts, unsigned secs)
{
  (void) up;
  if (clock_gettime(CLOCK_MONOTONIC, ts) < 0)
    return -errno;
  ts->tv_sec += secs;
  return 0;
}

/* --- the connections' events (client.h: the layer below this one) ---- */

static bool ev_running(struct upstairs *up)
{
  return up__phase(up) == UP_PH_RUNNING;
}

static void ev_connected(struct upstairs *up, struct cl *c)
{
  if (up->dst[c->idx].connected_once)
    up->dst[c->idx].reconnects++;
  up->dst[c->idx].connected_once = true;
}

static bool ev_activated(struct upstairs *up, struct cl *c, uint64_t gen)
{
  if (gen != up->gen)
    return false;
  up__on_activated(up, c);
  return true;
}

static void ev_lost(struct upstairs *up, struct cl *c)
{
  if (!c->lr)
    __atomic_sub_fetch(&up->n_active, 1, __ATOMIC_SEQ_CST);
  c->lr = false;
  up__ds_lost(up, c);
  up__repair_lost(up, c);
}

static void ev_job_done(struct upstairs *up, struct cl *c,
                        const struct proto_job_done *d)
{
  if (!up__repair_on_done(up, c, d))
    up__on_job_done(up, c, d);
}

static const struct cl_events up_cl_events = {
    .changed = up__ds_update,
    .handshake = up__handshake_step,
    .running = ev_running,
    .start_fail = up__start_fail,
    .connected = ev_connected,
    .hello = up__on_hello,
    .activated = ev_activated,
    .fenced = up__fence,
    .lost = ev_lost,
    .held_done = up__extend_on_done,
    .job_done = ev_job_done,
    .read_done = up__on_read_done,
    .extent_map = up__on_extent_map,
    .snapshots = up__on_snapshots,
    .job_put = up__job_loop_put,
};

/* Validate cfg, copy it (key into a crypt_key) and wipe cfg->key. */
int up_new(struct up_config *cfg, struct upstairs **out)
{
  struct upstairs *up;
  pthread_condattr_t ca;
  int r = 0;

  *out = NULL;
  up_debug_io = cfg->debug_io;
  up_debug_net = cfg->debug_net;
  up_debug_repair = cfg->debug_repair;
  if (cfg->write_quorum == 0)
    cfg->write_quorum = 2;
  if (cfg->timeout == 0)
    cfg->timeout = UP_DEFAULT_TIMEOUT;
  if (cfg->max_behind == 0)
    cfg->max_behind = UP_MAX_BEHIND_BYTES;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (!cfg->host[i][0] || cfg->port[i] == 0)
      r = -EINVAL;
  if (cfg->write_quorum < 2 || cfg->write_quorum > 3 ||
      cfg->gen >= (1ull << 32) || cfg->max_behind < UP_MIN_BEHIND ||
      cfg->max_behind > UP_MAX_BEHIND)
    r = -EINVAL;
  up = r == 0 ? calloc(1, sizeof *up) : NULL;
  if (r == 0 && !up)
    r = -ENOMEM;
  if (r == 0 && cfg->have_key)
    r = crypt_key_new(cfg->key, &up->key);
  if (r == 0)
    r = crypt_random(&up->session_id, sizeof up->session_id);
  if (r == 0)
    r = up__vcache_init(up);
  crypt_wipe(cfg->key, sizeof cfg->key);
  if (r < 0) {
    if (up) {
      crypt_key_free(up->key);
      if (up->vc)
        up__vcache_free(up);
    }
    free(up);
    return r;
  }
  up->cfg = *cfg;
  pthread_mutex_init(&up->lock, NULL);
  pthread_mutex_init(&up->rl_lock, NULL);
  pthread_mutex_init(&up->state_lock, NULL);
  pthread_mutex_init(&up->adm_err_lock, NULL);
  up__scrub_init(up);
  up__extend_init(up);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&up->start_cond, &ca);
  pthread_cond_init(&up->rl_cond, &ca);
  pthread_condattr_destroy(&ca);
  up->clenv =
      (struct cl_env){.ev = &up_cl_events,
                      .loop = &up->loop,
                      .auth = &up->cfg.auth,
                      .encrypted = up->cfg.have_key,
                      .session_id = up->session_id,
                      .snap = up->cfg.snapshot[0] ? up->cfg.snapshot : NULL};
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    cl_init(&up->cl[i], up, &up->clenv, i, cfg->host[i], cfg->port[i]);
    up->dst[i].p50_us = up->dst[i].p99_us = -1;
  }
  *out = up;
  return 0;
}

bool up_snapshot_mode(const struct upstairs *up)
{
  return up->cfg.snapshot[0] != '\0';
}

const char *up_error(const struct upstairs *up)
{
  return up->err[0] ? up->err : "unknown error";
}

/* Any thread: the count grows online (extend.c publishes it last). */
uint64_t up_size(const struct upstairs *up)
{
  return (uint64_t) __atomic_load_n(&up->region.extent_count,
                                    __ATOMIC_ACQUIRE) *
         up->region.extent_size * up->region.block_size;
}

uint32_t up_block_size(const struct upstairs *up)
{
  return up->region.block_size;
}

/* Record why start-up failed and wake up_start (first failure wins). */
bool up__start_fail(struct upstairs *up, const char *fmt, ...)
{
  va_list ap;
  bool starting;

  pthread_mutex_lock(&up->lock);
  starting = up->phase == UP_PH_CONNECT || up->phase == UP_PH_ACTIVATING ||
             up->phase == UP_PH_RECONCILE;
  if (starting) {
    va_start(ap, fmt);
    vsnprintf(up->err, sizeof up->err, fmt, ap);
    va_end(ap);
    up->phase = UP_PH_FAILED;
    pthread_cond_broadcast(&up->start_cond);
  }
  starting = starting || up->phase == UP_PH_FAILED;
  pthread_mutex_unlock(&up->lock);
  return starting;
}

/* Set the phase and wake up_start if it is an outcome (loop thread). */
void up__set_phase(struct upstairs *up, enum up_phase ph)
{
  pthread_mutex_lock(&up->lock);
  if (up->phase != UP_PH_FAILED)
    up->phase = ph;
  pthread_cond_broadcast(&up->start_cond);
  pthread_mutex_unlock(&up->lock);
  up__ds_update_all(up); /* the phase is part of their states */
}

/* The loop's phase (it is written only by the loop thread). */
enum up_phase up__phase(struct upstairs *up)
{
  enum up_phase ph;

  pthread_mutex_lock(&up->lock);
  ph = up->phase;
  pthread_mutex_unlock(&up->lock);
  return ph;
}

/* A newer upstairs took over: stop everything for good. */
void up__fence(struct upstairs *up, struct cl *c, uint64_t gen)
{
  bool first;

  pthread_mutex_lock(&up->lock);
  first = !up->fenced;
  up->fenced = true;
  pthread_mutex_unlock(&up->lock);
  if (first)
    log_error("fenced: downstairs %s activated generation %llu", c->name,
              (unsigned long long) gen);
  up__start_fail(up, "fenced: downstairs %s activated generation %llu", c->name,
                 (unsigned long long) gen);
  up__fail_all(up, -EROFS);
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    cl_close(&up->cl[i], true, "fenced");
}

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

/* ACTIVATE's uuid part for c: ours, when its region has none yet. */
static void up_activate_uuid(struct upstairs *up, const struct cl *c,
                             struct proto_activate *a)
{
  if (!geom_uuid_is_zero(c->hello.region.uuid))
    return;
  a->set_uuid = 1;
  memcpy(a->uuid, up->region.uuid, PROTO_UUID_LEN);
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
    uint8_t buf[PROTO_ACTIVATE_LEN];

    if (c->state != CL_READY) {
      log_error("downstairs %s is missing (%s): activating without it; it "
                "will be live-repaired when it returns",
                c->name, c->why);
      cl_close(c, false, NULL);
      continue;
    }
    a.set_kcv = up->key && !c->hello.has_kcv;
    up_activate_uuid(up, c, &a);
    c->state = CL_ACTIVATING;
    if (cl_send_copy(c, buf, proto_put_activate(buf, &a)) < 0)
      cl_close(c, false, "write failed");
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
    uint8_t buf[PROTO_ACTIVATE_LEN];

    if (c->state != CL_READY)
      continue;
    if (up->key && !c->hello.has_kcv &&
        crypt_kcv_make(up->key, up->region.uuid, a.kcv.nonce, a.kcv.tag) == 0)
      a.set_kcv = 1;
    up_activate_uuid(up, c, &a);
    c->state = CL_ACTIVATING;
    if (cl_send_copy(c, buf, proto_put_activate(buf, &a)) < 0)
      cl_close(c, false, "write failed");
  }
}

/* ACTIVATE_OK from c: count it during start-up; live-repair it later. */
void up__admit(struct upstairs *up, struct cl *c)
{
  c->state = CL_ACTIVE;
  c->was_active = true;
  c->backoff_ms = 0;
  c->down_logged = false;
  c->ping_out = false;
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
  c->state = CL_ACTIVE;
  c->was_active = true;
  c->backoff_ms = 0;
  c->down_logged = false;
  c->ping_out = false;
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

/* Running: reconnect lost downstairs with capped exponential backoff
 * (logged once per outage), and give up on a handshake that stalls (a
 * stopped process still completes the TCP handshake). */
static void up_reconnect(struct upstairs *up, uint64_t now, uint64_t tmo)
{
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    if (c->state == CL_IDLE && !c->final && now >= c->next_try_ms) {
      if (!c->down_logged)
        log_info("downstairs %s is down (%s): reconnecting with backoff "
                 "(at most %u s)",
                 c->name, c->why, UP_BACKOFF_MAX_MS / 1000);
      c->down_logged = true;
      c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 1000;
      if (c->backoff_ms > UP_BACKOFF_MAX_MS)
        c->backoff_ms = UP_BACKOFF_MAX_MS;
      c->next_try_ms = now + c->backoff_ms;
      cl_connect(c);
    } else if (c->state >= CL_CONNECTING && c->state <= CL_ACTIVATING &&
               now - c->conn_ms >= tmo) {
      cl_close(c, false, "handshake timed out");
    }
  }
}

/* Running: ping idle downstairs; fault one whose ping went unanswered. */
static void up_ping(struct upstairs *up, uint64_t now, uint64_t tmo)
{
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    uint8_t buf[PROTO_PING_LEN];
    /* READY ones too: a downstairs closes a connection that is not
     * activated and silent for its --handshake-timeout (10 s). */
    if (c->state != CL_ACTIVE && c->state != CL_READY)
      continue;
    if (c->ping_out && now - c->ping_ms >= tmo) {
      log_warn("downstairs %s faulted: no answer for %u s", c->name,
               up->cfg.timeout);
      cl_close(c, false, "timeout");
    } else if (!c->ping_out && now - c->last_tx_ms >= UP_PING_IDLE_MS &&
               now - c->last_rx_ms >= UP_PING_IDLE_MS) {
      c->ping_out = true;
      c->ping_ms = now;
      if (cl_send_copy(c, buf, proto_put_ping(buf, PROTO_T_PING, now)) < 0)
        cl_close(c, false, "write failed");
    }
  }
}

/* Every second: reconnect during start-up, job timeouts, pings, repair
 * timeouts and reconnects while running. */
static void on_tick(uv_timer_t *t)
{
  struct upstairs *up = t->data;
  enum up_phase ph = up__phase(up);
  uint64_t now = uv_now(&up->loop), tmo = up->cfg.timeout * 1000ull;

  up__stats_tick(up);
  if (ph == UP_PH_CONNECT)
    for (int i = 0; i < UP_DOWNSTAIRS; i++)
      if (up->cl[i].state == CL_IDLE && !up->cl[i].final)
        cl_connect(&up->cl[i]);
  if (ph == UP_PH_CONNECT || ph == UP_PH_ACTIVATING) {
    up_ping(up, now, tmo);
    up__extend_tick(up);
    up__handshake_step(up);
    return;
  }
  if (ph == UP_PH_RECONCILE) {
    up__check_timeouts(up);
    up_ping(up, now, tmo);
    up__reconcile_poll(up);
    return;
  }
  if (ph != UP_PH_RUNNING)
    return;
  up__check_timeouts(up);
  up_ping(up, now, tmo);
  up_reconnect(up, now, tmo);
  up__handshake_step(up);
  up__repair_tick(up);
  up__extend_tick(up);
}

/* The loop thread: runs until every handle is closed by up_stop. */
static void *up_thread(void *arg)
{
  struct upstairs *up = arg;

  uv_run(&up->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* Create the loop and its handles, start connecting (no thread yet). */
static int up_loop_init(struct upstairs *up)
{
  int r = uv_loop_init(&up->loop);

  if (r < 0)
    return r;
  up->loop_init = true;
  if ((r = uv_async_init(&up->loop, &up->async, up__drain)) < 0)
    return r;
  up->async.data = up;
  if ((r = uv_timer_init(&up->loop, &up->tick)) < 0)
    return r;
  up->tick.data = up;
  if ((r = uv_timer_start(&up->tick, on_tick, 1000, 1000)) < 0)
    return r;
  if ((r = uv_async_init(&up->loop, &up->adm_async, up__admin_on_async)) < 0)
    return r;
  up->adm_async.data = up;
  up->adm_async_init = true;
  if ((r = uv_prepare_init(&up->loop, &up->prep)) < 0)
    return r;
  up->prep.data = up;
  up->prep_init = true;
  if ((r = uv_prepare_start(&up->prep, up__before_poll)) < 0)
    return r;
  up->start_ms = uv_now(&up->loop);
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (cl_resolve(&up->cl[i], up->cfg.host[i], up->cfg.port[i]) == 0)
      cl_connect(&up->cl[i]);
  return 0;
}

/* Start, wait for the outcome of activation (see upstairs.h). */
int up_start(struct upstairs *up)
{
  struct timespec dl;
  enum up_phase ph;
  bool reconciled = false;
  int r;

  if (up->phase != UP_PH_NEW) {
    snprintf(up->err, sizeof up->err, "up_start called twice");
    return -EINVAL;
  }
  if (up->cfg.state_path[0]) {
    r = up__state_load(up);
    if (r < 0 && r != -ENOENT) {
      snprintf(up->err, sizeof up->err, "state file %.400s: cannot read: %s",
               up->cfg.state_path,
               r == -EINVAL ? "not a crucible state "
                              "file"
                            : log_strerror(-r));
      up->phase = UP_PH_FAILED;
      return r;
    }
  }
  if (up__admin_open(up) < 0) {
    up->phase = UP_PH_FAILED;
    return -EINVAL;
  }
  up->phase = UP_PH_CONNECT;
  up->err[0] = '\0';
  r = up_loop_init(up);
  if (r == 0)
    r = -pthread_create(&up->thread, NULL, up_thread, up);
  if (r < 0) {
    if (!up->err[0])
      snprintf(up->err, sizeof up->err, "cannot start the loop: %s",
               log_strerror(-r));
    up->phase = UP_PH_FAILED;
    up_stop(up);
    return r;
  }
  up->thread_started = true;
  if (up__admin_start(up) < 0) {
    up->phase = UP_PH_FAILED;
    up_stop(up);
    return -EIO;
  }
  up__deadline(up, &dl, 2 * up->cfg.timeout + UP_WAIT_SLACK_S);
  pthread_mutex_lock(&up->lock);
  while (up->phase == UP_PH_CONNECT || up->phase == UP_PH_ACTIVATING ||
         up->phase == UP_PH_RECONCILE) {
    if (up->phase == UP_PH_RECONCILE && !reconciled) {
      /* This thread does the block-level work (reconcile.c); each of its
       * jobs has its own deadline, so the wait below starts afresh. */
      reconciled = true;
      pthread_mutex_unlock(&up->lock);
      up__reconcile(up);
      pthread_mutex_lock(&up->lock);
      up__deadline(up, &dl, 2 * up->cfg.timeout + UP_WAIT_SLACK_S);
      continue;
    }
    if (pthread_cond_timedwait(&up->start_cond, &up->lock, &dl) == ETIMEDOUT) {
      snprintf(up->err, sizeof up->err, "activation did not finish in time");
      up->phase = UP_PH_FAILED;
    }
  }
  ph = up->phase;
  pthread_mutex_unlock(&up->lock);
  /* Before the first guest request: a rollback a crash interrupted. */
  if (ph == UP_PH_RUNNING && up__rollback_resume(up) == 0)
    return 0;
  up_stop(up);
  return -EIO;
}

/* Loop thread, on stop: fail everything and close every handle. */
void up__shutdown(struct upstairs *up)
{
  if (up->shut)
    return;
  up->shut = true;
  up__fail_all(up, -EIO);
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    cl_close(&up->cl[i], true, "stopped");
  up__wake_flush(up);  /* every job was decided */
  up__stats_write(up); /* the last one: phase stopped (or failed) */
  uv_close((uv_handle_t *) &up->tick, NULL);
  uv_close((uv_handle_t *) &up->async, NULL);
  if (up->prep_init)
    uv_close((uv_handle_t *) &up->prep, NULL);
  if (up->adm_async_init)
    uv_close((uv_handle_t *) &up->adm_async, NULL);
}

/* Stop the loop thread and join it; the upstairs takes no more IO. */
void up_stop(struct upstairs *up)
{
  int r;

  /* First the scrub (its jobs need the loop) and the admin thread (it
   * sends adm_async, which the loop's shutdown closes). */
  up__scrub_stop(up);
  up__extend_abort(up); /* the admin thread may wait in up_extend */
  up__admin_stop(up);
  pthread_mutex_lock(&up->lock);
  up->stopping = true;
  if (up->phase != UP_PH_FAILED)
    up->phase = UP_PH_STOPPED;
  /* Sent under the lock: the loop closes the async handle only after it
   * saw `stopping` under the same lock, so no send races the close. */
  if (up->thread_started)
    uv_async_send(&up->async);
  pthread_mutex_unlock(&up->lock);
  if (up->thread_started) {
    pthread_join(up->thread, NULL);
    up->thread_started = false;
  } else if (up->loop_init) {
    /* Never ran: close the handles here, no other thread exists. */
    up__shutdown(up);
    uv_run(&up->loop, UV_RUN_DEFAULT);
  }
  up__repair_stop(up); /* its jobs were failed with the loop's */
  if (up->loop_init) {
    r = uv_loop_close(&up->loop);
    if (r < 0)
      log_error("uv_loop_close: %s", uv_strerror(r));
    up->loop_init = false;
  }
}

bool up_running(struct upstairs *up)
{
  return up__phase(up) == UP_PH_RUNNING;
}

/* Stop if needed, wipe the key and free. */
void up_free(struct upstairs *up)
{
  if (!up)
    return;
  up_stop(up);
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    cl_free(&up->cl[i]);
  crypt_key_free(up->key);
  pthread_mutex_destroy(&up->lock);
  pthread_mutex_destroy(&up->rl_lock);
  pthread_mutex_destroy(&up->state_lock);
  pthread_mutex_destroy(&up->adm_err_lock);
  up__admin_free(up);
  up__scrub_free(up);
  up__extend_free(up);
  up__vcache_free(up);
  up__repair_free(up);
  free(up->wake);

  pthread_cond_destroy(&up->start_cond);
  pthread_cond_destroy(&up->rl_cond);
  crypt_wipe(up, sizeof *up);
  free(up);
}
