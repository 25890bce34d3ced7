/* crucible-c upstairs: the life cycle (see upstairs.h): up_new, up_start
 * (the loop thread, its handles and the 1 s tick; activation itself is
 * activate.c's), up_stop, up_free, the start's outcome and phase, and
 * fencing.  The connections' events (client.h) arrive here first.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* --- the job tracker's calls up (jobs.c: the layer below) ------------ */

static void jh_tracked(struct upstairs *up, struct up_job *job)
{
  if ((job->type == PROTO_T_WRITE || job->type == PROTO_T_TRIM) && !job->only)
    up__vcache_note(up, job);
  up__xs_note(up, job);
}

static void jh_drained(struct upstairs *up)
{
  if (__atomic_load_n(&up->rep.rec_result, __ATOMIC_ACQUIRE) != 0)
    up__reconcile_poll(up); /* reconcile.c's thread has finished */
  up__lr_poll(up);          /* repair.c's worker may have finished */
}

static const struct up_job_hooks up_job_hooks = {
    .tracked = jh_tracked,
    .patch_snapshot = up__snap_patch,
    .is_flush = up__snap_is_flush,
    .before_send = up__lr_before_send,
    .replied = up__stats_reply,
    .decided = up__stats_decided,
    .drained = jh_drained,
    .stopping = up__shutdown,
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
  up->jh = &up_job_hooks;
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
