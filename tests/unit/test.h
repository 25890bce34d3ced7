/* crucible-c unit tests: a minimal check macro that reports and counts. */
#ifndef CRUCIBLE_TEST_H
#define CRUCIBLE_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int test_failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      test_failures++;                                                         \
    }                                                                          \
  } while (0)

/* Hex string (even length) into out; returns the byte count. */
static inline size_t unhex(const char *s, uint8_t *out)
{
  size_t n = 0;
  for (; s[0] && s[1]; s += 2) {
    unsigned v;
    sscanf(s, "%2x", &v);
    out[n++] = (uint8_t) v;
  }
  return n;
}

static inline int test_done(const char *name)
{
  if (test_failures) {
    fprintf(stderr, "%s: %d check(s) failed\n", name, test_failures);
    return 1;
  }
  printf("%s: ok\n", name);
  return 0;
}

#endif
