/* Unit test for plugin/stats.c: the latency histogram against a naive
 * model (sort, take the nearest rank: the histogram's answer is never
 * below it and at most 25 % above), and the stats file (one whole JSON
 * document, no FILE.tmp left; an unwritable path is reported once). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/log.h"
#include "../../plugin/upstairs_int.h"
#include "test.h"

#define N 5000

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
  return x < y ? -1 : x > y;
}

/* Random latencies spread over 1 µs .. ~1 s, checked at several ranks. */
static void test_hist(void)
{
  static uint64_t v[N];
  static const unsigned pcts[] = {1, 50, 90, 99, 100};
  struct up_hist h;

  memset(&h, 0, sizeof h);
  CHECK(up__hist_pct(&h, 50) == -1);
  srand(7);
  for (unsigned i = 0; i < N; i++) {
    v[i] = (uint64_t) rand() >> (rand() % 31);
    up__hist_add(&h, v[i]);
  }
  qsort(v, N, sizeof v[0], cmp_u64);
  for (unsigned k = 0; k < sizeof pcts / sizeof pcts[0]; k++) {
    uint64_t exact = v[(N * pcts[k] + 99) / 100 - 1];
    int64_t got = up__hist_pct(&h, pcts[k]);
    CHECK(got >= 0 && (uint64_t) got >= exact);
    CHECK((uint64_t) got <= exact + exact / 4);
  }
  memset(&h, 0, sizeof h);
  up__hist_add(&h, 3);
  CHECK(up__hist_pct(&h, 50) == 3 && up__hist_pct(&h, 99) == 3);
}

/* Write the file for an upstairs that never started. */
static void test_file(void)
{
  struct upstairs *up = calloc(1, sizeof *up);
  char dir[] = "/tmp/crucible-unit-stats.XXXXXX", buf[4096];
  char tmp[sizeof up->cfg.stats_path + 8];
  FILE *f;
  size_t n;

  if (!up || !mkdtemp(dir)) {
    perror("test_stats: setup");
    exit(1);
  }
  pthread_mutex_init(&up->lock, NULL);
  /* The third name: UTF-8 (bytes >= 0x80: negative as a signed char, as
   * on x86) passes as it is, a quote and a control byte are escaped. */
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    cl_init(&up->cl[i], up, &up->clenv, i,
            i < 2 ? "127.0.0.1" : "h\xc3\xa9\"q\x01", (uint16_t) (3810 + i));
    up->dst[i].p50_us = up->dst[i].p99_us = -1;
  }
  up->dst[1].p50_us = 120;
  up->dst[1].p99_us = 900;
  up->vst.writes = 3;
  snprintf(up->cfg.stats_path, sizeof up->cfg.stats_path, "%s/s.json", dir);
  up__stats_write(up);
  CHECK(!up->stats_failing);
  f = fopen(up->cfg.stats_path, "r");
  CHECK(f != NULL);
  n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  buf[n] = '\0';
  if (f)
    fclose(f);
  CHECK(strncmp(buf, "{\"version\":1,", 13) == 0);
  CHECK(strstr(buf, "\"phase\":\"connecting\""));
  CHECK(strstr(buf, "\"address\":\"127.0.0.1:3811\",\"state\":\"offline\""));
  CHECK(strstr(buf, "\"address\":\"h\xc3\xa9\\\"q\\u0001:3812\""));
  CHECK(strstr(buf, "\"latency_us\":{\"p50\":120,\"p99\":900}"));
  CHECK(strstr(buf, "\"latency_us\":{\"p50\":null,\"p99\":null}"));
  CHECK(strstr(buf, "\"volume\":{\"reads\":0,\"writes\":3,"));
  CHECK(n > 0 && buf[n - 2] == '}' && buf[n - 1] == '\n');
  snprintf(tmp, sizeof tmp, "%s.tmp", up->cfg.stats_path);
  CHECK(access(tmp, F_OK) < 0);
  unlink(up->cfg.stats_path);
  snprintf(up->cfg.stats_path, sizeof up->cfg.stats_path, "%s/no/s.json", dir);
  up__stats_write(up); /* one warning */
  CHECK(up->stats_failing);
  up__stats_write(up); /* silent */
  CHECK(up->stats_failing);
  rmdir(dir);
  pthread_mutex_destroy(&up->lock);
  free(up);
}

int main(void)
{
  log_set_level(LOG_WARN);
  test_hist();
  test_file();
  return test_done("test_stats");
}
