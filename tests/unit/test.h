/* crucible-c unit tests: a minimal check macro that reports and counts. */
#ifndef CRUCIBLE_TEST_H
#define CRUCIBLE_TEST_H

#include <stdio.h>
#include <stdlib.h>

static int test_failures;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,      \
              #cond);                                                        \
      test_failures++;                                                       \
    }                                                                        \
  } while (0)

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
