/* crucible-c: small parsers for addresses and numbers. */
#include "parse.h"

#include <errno.h>
#include <string.h>

int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
  uint64_t v = 0;
  if (!s || !*s)
    return -EINVAL;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -EINVAL;
    unsigned d = (unsigned) (*s - '0');
    if (v > (UINT64_MAX - d) / 10)
      return -ERANGE;
    v = v * 10 + d;
  }
  if (v > max)
    return -ERANGE;
  *out = v;
  return 0;
}

int parse_size(const char *s, uint64_t max, uint64_t *out)
{
  char num[32];
  size_t len = s ? strlen(s) : 0;
  unsigned shift = 0;
  uint64_t v;
  int r;

  if (len == 0 || len >= sizeof num)
    return -EINVAL;
  memcpy(num, s, len + 1);
  switch (num[len - 1]) {
  case 'k':
  case 'K': shift = 10; break;
  case 'm':
  case 'M': shift = 20; break;
  case 'g':
  case 'G': shift = 30; break;
  case 't':
  case 'T': shift = 40; break;
  default: break;
  }
  if (shift)
    num[--len] = '\0';
  if ((r = parse_u64(num, UINT64_MAX, &v)) < 0)
    return r;
  if (v > (UINT64_MAX >> shift) || (v << shift) > max)
    return -ERANGE;
  *out = v << shift;
  return 0;
}

int parse_hostport(const char *s, char host[PARSE_HOST_MAX], uint16_t *port)
{
  const char *colon, *h = s;
  size_t hl;
  uint64_t p;
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (!rb || rb[1] != ':')
      return -EINVAL;
    h = s + 1;
    hl = (size_t) (rb - h);
    colon = rb + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || memchr(s, ':', (size_t) (colon - s)))
      return -EINVAL; /* bare IPv6 needs brackets */
    hl = (size_t) (colon - s);
  }
  if (hl == 0 || hl >= PARSE_HOST_MAX)
    return -EINVAL;
  int r = parse_u64(colon + 1, 65535, &p);
  if (r < 0 || p == 0)
    return r < 0 ? r : -ERANGE;
  memcpy(host, h, hl);
  host[hl] = '\0';
  *port = (uint16_t) p;
  return 0;
}
