/* crucible-c: small parsers shared by the daemon and the plugin.
 * All return 0 or -EINVAL (or -ERANGE when out of range). */
#ifndef CRUCIBLE_PARSE_H
#define CRUCIBLE_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define PARSE_HOST_MAX 256

/* "host:port", "[v6addr]:port".  host gets the host without brackets. */
int parse_hostport(const char *s, char host[PARSE_HOST_MAX], uint16_t *port);
/* Decimal unsigned integer, whole string, <= max. */
int parse_u64(const char *s, uint64_t max, uint64_t *out);
/* A size in bytes: decimal digits and an optional suffix k K m M g G t T
 * (powers of 1024, as nbdkit_parse_size), whole string, <= max. */
int parse_size(const char *s, uint64_t max, uint64_t *out);

#endif
