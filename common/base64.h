/* crucible-c: base64 (RFC 4648, standard alphabet, '=' padding).
 * Used for key= and for the key check value in region.json. */
#ifndef CRUCIBLE_BASE64_H
#define CRUCIBLE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Bytes needed to encode len bytes, NUL included. */
#define BASE64_ENCODED_LEN(len) ((((len) + 2) / 3) * 4 + 1)

/* Encode len bytes into out (BASE64_ENCODED_LEN(len) bytes), NUL-terminated. */
void base64_encode(const uint8_t *in, size_t len, char *out);

/* Decode a NUL-terminated string; surrounding whitespace (a trailing
 * newline from a key file) is ignored, anything else invalid is -EINVAL.
 * -ENOSPC if the result would exceed outcap.  *outlen gets the length. */
int base64_decode(const char *in, uint8_t *out, size_t outcap, size_t *outlen);

#endif
