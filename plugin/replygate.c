/* crucible-c upstairs: spacing of request returns after an error (see
 * replygate.h for why).
 *
 * Ordering: an ungated return stores last_ns, then loads until_ns; an
 * error stores until_ns, then loads last_ns (both sequentially
 * consistent).  So a return that raced an error's start is either seen
 * by it (the error waits `space' after it) or sees the error (and is
 * gated itself).
 */
#include "replygate.h"

#include <errno.h>
#include <time.h>

static uint64_t mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
  struct timespec ts = {.tv_sec = (time_t) (ns / 1000000000u),
                        .tv_nsec = (long) (ns % 1000000000u)};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

void rg_init(struct replygate *g, uint64_t space_ns, uint64_t hold_ns)
{
  g->space_ns = space_ns;
  g->hold_ns = hold_ns;
  atomic_init(&g->last_ns, 0);
  atomic_init(&g->until_ns, 0);
  pthread_mutex_init(&g->lock, NULL);
}

void rg_destroy(struct replygate *g)
{
  pthread_mutex_destroy(&g->lock);
}

void rg_return(struct replygate *g, bool error)
{
  if (g->space_ns == 0)
    return;
  uint64_t now = mono_ns();
  if (!error && now >= atomic_load(&g->until_ns)) {
    atomic_store(&g->last_ns, now);
    if (now >= atomic_load(&g->until_ns))
      return;
    /* An error started meanwhile: be gated (behind our own store too,
     * which costs one `space'). */
  }
  pthread_mutex_lock(&g->lock);
  if (error) {
    uint64_t until = now + g->hold_ns;
    if (until > atomic_load(&g->until_ns))
      atomic_store(&g->until_ns, until);
  }
  for (;;) {
    now = mono_ns();
    uint64_t last = atomic_load(&g->last_ns);
    if (now >= last + g->space_ns)
      break;
    sleep_ns(last + g->space_ns - now);
  }
  atomic_store(&g->last_ns, now);
  pthread_mutex_unlock(&g->lock);
}
