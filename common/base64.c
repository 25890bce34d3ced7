/* crucible-c: base64 (RFC 4648). */
#include "base64.h"

#include <errno.h>
#include <string.h>

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(const uint8_t *in, size_t len, char *out)
{
  size_t i = 0;
  for (; i + 2 < len; i += 3) {
    uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
    *out++ = alphabet[v >> 18];
    *out++ = alphabet[(v >> 12) & 63];
    *out++ = alphabet[(v >> 6) & 63];
    *out++ = alphabet[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t) in[i] << 16;
    if (i + 1 < len)
      v |= (uint32_t) in[i + 1] << 8;
    *out++ = alphabet[v >> 18];
    *out++ = alphabet[(v >> 12) & 63];
    *out++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
    *out++ = '=';
  }
  *out = '\0';
}

static int b64val(char c)
{
  const char *p = c ? strchr(alphabet, c) : NULL;
  return p ? (int) (p - alphabet) : -1;
}

static int is_space(char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int base64_decode(const char *in, uint8_t *out, size_t outcap, size_t *outlen)
{
  size_t start = 0, end = strlen(in), n = 0;
  while (start < end && is_space(in[start]))
    start++;
  while (end > start && is_space(in[end - 1]))
    end--;
  size_t len = end - start;
  if (len % 4)
    return -EINVAL;
  for (size_t i = start; i < end; i += 4) {
    int v[4], pad = 0;
    for (int j = 0; j < 4; j++) {
      char c = in[i + j];
      if (c == '=' && i + 4 == end && j >= 2) {
        v[j] = 0;
        pad++;
      } else if (pad || (v[j] = b64val(c)) < 0) {
        return -EINVAL;
      }
    }
    uint32_t w = (uint32_t) v[0] << 18 | (uint32_t) v[1] << 12 |
                 (uint32_t) v[2] << 6 | (uint32_t) v[3];
    size_t k = 3 - (size_t) pad;
    if (n + k > outcap)
      return -ENOSPC;
    out[n++] = (uint8_t) (w >> 16);
    if (k > 1)
      out[n++] = (uint8_t) (w >> 8);
    if (k > 2)
      out[n++] = (uint8_t) w;
  }
  *outlen = n;
  return 0;
}
