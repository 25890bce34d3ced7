/* Unit test: common/progress: formatting, rate/ETA, report throttling. */
#include <string.h>

#include "../../downstairs/progress.h"
#include "test.h"

#define MIB (1024ull * 1024)

static void test_units(void)
{
  char b[32];
  progress_bytes(0, b, sizeof b);
  CHECK(strcmp(b, "0 bytes") == 0);
  progress_bytes(1023, b, sizeof b);
  CHECK(strcmp(b, "1023 bytes") == 0);
  progress_bytes(1024, b, sizeof b);
  CHECK(strcmp(b, "1 KiB") == 0);
  progress_bytes(3 * MIB / 2, b, sizeof b);
  CHECK(strcmp(b, "1.5 MiB") == 0);
  progress_bytes(1ull << 40, b, sizeof b);
  CHECK(strcmp(b, "1 TiB") == 0);
  progress_duration(7, b, sizeof b);
  CHECK(strcmp(b, "0:07") == 0);
  progress_duration(62.4, b, sizeof b);
  CHECK(strcmp(b, "1:02") == 0);
  progress_duration(3723, b, sizeof b);
  CHECK(strcmp(b, "1:02:03") == 0);
  progress_duration(-1, b, sizeof b);
  CHECK(strcmp(b, "--:--") == 0);
}

static void test_format(void)
{
  char b[PROGRESS_LINE_MAX];
  /* 25 of 100 MiB in 5 s: 5 MiB/s, 75 MiB left = 15 s. */
  progress_format(b, sizeof b, "export", false, 25 * MIB, 100 * MIB, 5);
  CHECK(strcmp(b, "export:  25% 25 MiB of 100 MiB, 5 MiB/s, ETA 0:15") == 0);
  progress_format(b, sizeof b, "export", true, 25 * MIB, 100 * MIB, 5);
  CHECK(strcmp(b, "export [######..................]  25% 25 MiB/100 MiB "
                  "5 MiB/s ETA 0:15") == 0);
  /* Nothing done yet: no rate, ETA unknown. */
  progress_format(b, sizeof b, "verify", false, 0, 100 * MIB, 0);
  CHECK(strstr(b, "0 bytes/s, ETA --:--") != NULL);
  /* 99.9% reads 99%, never 100% before the end. */
  progress_format(b, sizeof b, "x", false, 999, 1000, 1);
  CHECK(strncmp(b, "x:  99%", 7) == 0);
  /* A short buffer truncates, never overflows. */
  char small[8];
  memset(small, 'Z', sizeof small);
  int n = progress_format(small, 6, "import", true, 1, 2, 1);
  CHECK(n > 6 && small[5] == '\0' && small[6] == 'Z');
}

/* Reports only when an interval passed; plain lines on a non-terminal. */
static void test_throttle(void)
{
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  struct progress p;
  progress_start(&p, f, false, "import", 100 * MIB);
  progress_update_at(&p, 1 * MIB, 1);
  progress_update_at(&p, 2 * MIB, PROGRESS_LOG_INTERVAL - 0.1);
  fflush(f);
  CHECK(len == 0);
  progress_update_at(&p, 50 * MIB, PROGRESS_LOG_INTERVAL);
  fflush(f);
  CHECK(strstr(text, "import:  50% 50 MiB of 100 MiB") != NULL);
  CHECK(strchr(text, '\r') == NULL && text[len - 1] == '\n');
  size_t first = len;
  progress_update_at(&p, 60 * MIB, PROGRESS_LOG_INTERVAL + 1);
  fflush(f);
  CHECK(len == first);
  /* Clamped to total. */
  progress_update_at(&p, 200 * MIB, 3 * PROGRESS_LOG_INTERVAL);
  CHECK(p.done == 100 * MIB);
  progress_end(&p, true);
  fclose(f);
  CHECK(strstr(text, "import: 100 MiB in ") != NULL);
  free(text);

  /* Terminal: redrawn with \r, erased at the end. */
  text = NULL;
  f = open_memstream(&text, &len);
  progress_start(&p, f, true, "verify", 10);
  progress_update_at(&p, 5, PROGRESS_TTY_INTERVAL);
  CHECK(p.drawn);
  progress_end(&p, false);
  fclose(f);
  CHECK(strncmp(text, "\r\033[Kverify [", 11) == 0);
  /* Failure: the bar is erased and nothing else printed. */
  CHECK(len > 4 && strcmp(text + len - 4, "\r\033[K") == 0);
  free(text);

  /* No output stream: silent but still counting. */
  progress_start(&p, NULL, false, "x", 10);
  progress_update_at(&p, 3, 100);
  progress_end(&p, true);
  CHECK(p.done == 3);
}

int main(void)
{
  test_units();
  test_format();
  test_throttle();
  return test_done("test_progress");
}
