/* crucible-c fuzz harness: base64 (common/base64.c), used for key= and
 * the key check value in region.json.
 *
 * The input, as a NUL-terminated string, is decoded into buffers of
 * several capacities (exact-size heap buffers, so ASan sees overflows):
 * the result must fit the reported length, -ENOSPC must mean it did not
 * fit.  Whatever decodes must encode and decode back to the same bytes,
 * and the input bytes themselves must round-trip through encode/decode.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/base64.h"

/* encode(in) then decode must give in back. */
static void roundtrip(const uint8_t *in, size_t len)
{
  char *enc = malloc(BASE64_ENCODED_LEN(len));
  uint8_t *dec = malloc(len ? len : 1);
  size_t n = 0;
  if (!enc || !dec)
    abort();
  base64_encode(in, len, enc);
  if (strlen(enc) != BASE64_ENCODED_LEN(len) - 1)
    abort();
  if (base64_decode(enc, dec, len, &n) != 0 || n != len ||
      memcmp(dec, in, len) != 0)
    abort();
  free(enc);
  free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *s = malloc(size + 1);
  if (!s)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';

  size_t full = size; /* decoded output is never longer than the input */
  uint8_t *out = malloc(full ? full : 1);
  size_t n = 0;
  int r = base64_decode(s, out, full, &n);
  if (r != 0 && r != -EINVAL)
    abort();
  if (r == 0) {
    if (n > full)
      abort();
    /* Smaller capacities: -ENOSPC exactly when the result does not fit. */
    for (size_t cap = 0; cap < n && cap < 64; cap++) {
      uint8_t *small = malloc(cap ? cap : 1);
      size_t m = 0;
      if (!small || base64_decode(s, small, cap, &m) != -ENOSPC)
        abort();
      free(small);
    }
    roundtrip(out, n);
  }
  roundtrip(data, size);
  free(out);
  free(s);
  return 0;
}
