/* crucible-c upstairs internals: what stats.c, admin.c and scrub.c keep
 * in struct upstairs (its observability: states, health, latency
 * histograms, counters, the admin's error ring, the scrub).  Included by
 * upstairs_int.h; not a public API.
 */
#ifndef CRUCIBLE_UP_OBSERVE_H
#define CRUCIBLE_UP_OBSERVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "upstairs.h"

/* Observability (stats.c, loop thread only).  A downstairs' state as
 * the stats file and the status lines name it, derived from the
 * connection state, the live-repair flag and the volume phase. */
enum up_dstate {
  UP_DS_CONNECTING = 0,
  UP_DS_RECONCILING,
  UP_DS_ACTIVE,
  UP_DS_FAULTED,
  UP_DS_LIVE_REPAIR,
  UP_DS_OFFLINE
};

/* The volume's health (stats.c): healthy = 3 downstairs active,
 * degraded = 2, failed = fewer or fenced.  NONE: not computed yet. */
enum up_health { UP_H_NONE = 0, UP_H_HEALTHY, UP_H_DEGRADED, UP_H_FAILED };

/* Latency histogram in µs: UP_HIST_SUB linear buckets per power of two
 * (values below UP_HIST_SUB exact), so a percentile read off a bucket's
 * upper edge is at most 1/UP_HIST_SUB above the true value. */
#define UP_HIST_SUB 4
#define UP_HIST_BUCKETS (UP_HIST_SUB * 34)
struct up_hist {
  uint32_t n;
  uint32_t b[UP_HIST_BUCKETS];
};
void up__hist_add(struct up_hist *h, uint64_t us);
/* The pct-th percentile (nearest rank) as its bucket's upper edge, or -1
 * if h is empty. */
int64_t up__hist_pct(const struct up_hist *h, unsigned pct);

/* Per downstairs; counters are cumulative since up_start. */
struct up_ds_stats {
  uint64_t reads, writes, trims, flushes, read_bytes, write_bytes;
  uint64_t errors;     /* error replies (IO errors, short reads) */
  uint64_t faults;     /* dropped out of reconciling/active/live-repair */
  uint64_t reconnects; /* TCP connections after the first */
  bool connected_once;
  struct up_hist win;           /* replies in the current 1 s window */
  int64_t p50_us, p99_us;       /* of the last window; -1: no reply in it */
  uint32_t rep_done, rep_total; /* current or last repair (extents) */
  uint64_t rep_bytes_done, rep_bytes_total, rep_copied; /* bytes */
  uint64_t rep_start_ms;                                /* when it started */
};

/* The volume: jobs as callers see them (heal writes and read retries on
 * another replica are not counted). */
struct up_vol_stats {
  uint64_t reads, writes, trims, flushes, read_bytes, write_bytes;
  uint64_t errors; /* jobs that failed */
};

/* Admin socket (admin.c) and online scrub (scrub.c). */

/* Last errors kept for `status` (a ring; under adm_err_lock). */
#define UP_ERR_RING 8
#define UP_ERR_LEN 200
/* Scrub findings kept for `scrub status` (a ring, the newest last). */
#define UP_SCRUB_FINDINGS 32
#define UP_SCRUB_DEFAULT_RATE 50 /* MB/s */

enum up_scrub_state {
  UP_SC_NEVER = 0,
  UP_SC_RUNNING,
  UP_SC_DONE,
  UP_SC_STOPPED,
  UP_SC_FAILED
};

struct up_scrub_finding {
  int ds;          /* replica */
  bool stale;      /* authentic but older (else bad: failed its check) */
  bool healed;     /* the heal write succeeded */
  bool unhealable; /* no replica held an authentic copy */
  uint64_t lba, extent, block, version, good_version;
  char why[80];
};

/* One scrub at a time; every field under mu. */
struct up_scrub {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* quit, for the rate limiter's sleep */
  bool thr_started, quit;
  pthread_t thr;
  enum up_scrub_state state;
  char why[160];           /* failed / stopped: why */
  uint64_t rate;           /* bytes per second */
  uint64_t start_s, end_s; /* unix seconds */
  uint32_t ext_done, ext_total;
  uint64_t bytes_done, bytes_total;
  uint64_t blocks_bad, blocks_stale, blocks_healed, blocks_unhealable;
  uint64_t runs; /* scrubs started since up_start */
  struct up_scrub_finding f[UP_SCRUB_FINDINGS];
  uint64_t nf; /* findings ever (ring index nf % size) */
};

#endif
