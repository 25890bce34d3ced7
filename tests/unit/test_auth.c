/* Unit test: HMAC-SHA256 against RFC 4231 (test cases 1, 2 and 6), and
 * the handshake proof of common/auth.h: both sides agree, the two sides'
 * proofs differ (no reflection), any change of transcript or key fails,
 * key length limits and trailing newlines in key files. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/auth.h"
#include "test.h"

static void test_rfc4231(void)
{
  uint8_t key[131], out[32], want[32];
  const char *m1 = "Hi There", *m2 = "what do ya want for nothing?",
             *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";

  memset(key, 0x0b, 20);
  CHECK(auth_hmac_sha256(key, 20, (const uint8_t *) m1, strlen(m1), out) == 0);
  unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        want);
  CHECK(memcmp(out, want, 32) == 0);
  CHECK(auth_hmac_sha256((const uint8_t *) "Jefe", 4, (const uint8_t *) m2,
                         strlen(m2), out) == 0);
  unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        want);
  CHECK(memcmp(out, want, 32) == 0);
  memset(key, 0xaa, 131);
  CHECK(auth_hmac_sha256(key, 131, (const uint8_t *) m6, strlen(m6), out) == 0);
  unhex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        want);
  CHECK(memcmp(out, want, 32) == 0);
}

static void test_proof(void)
{
  struct auth_key k, k2;
  const char *why = NULL;
  uint8_t hello[80], ok[120], t[32], t2[32], mc[32], ms[32];

  CHECK(auth_key_set(&k, "0123456789abcdef\n", 17, &why) == 0 && k.len == 16);
  CHECK(auth_key_set(&k2, "0123456789abcdeX", 16, &why) == 0);
  CHECK(auth_key_set(&k2, "short\n", 6, &why) == -EINVAL && why != NULL);
  why = NULL; /* a NUL byte would shorten the plugin's copy only */
  CHECK(auth_key_set(&k2, "0123456789ab\0def", 16, &why) == -EINVAL &&
        why != NULL && strstr(why, "NUL") != NULL);
  CHECK(auth_random(hello, sizeof hello) == 0);
  CHECK(auth_random(ok, sizeof ok) == 0);
  CHECK(auth_transcript(hello, sizeof hello, ok, sizeof ok, t) == 0);
  CHECK(auth_mac(&k, AUTH_CLIENT, t, mc) == 0);
  CHECK(auth_mac(&k, AUTH_SERVER, t, ms) == 0);
  CHECK(memcmp(mc, ms, 32) != 0); /* no reflection */
  CHECK(auth_check(&k, AUTH_CLIENT, t, mc) == 0);
  CHECK(auth_check(&k, AUTH_SERVER, t, ms) == 0);
  CHECK(auth_check(&k, AUTH_SERVER, t, mc) == -EACCES);
  CHECK(auth_check(&k2, AUTH_CLIENT, t, mc) == -EACCES); /* other key */
  ok[84] ^= 1; /* another server nonce: a replayed proof fails */
  CHECK(auth_transcript(hello, sizeof hello, ok, sizeof ok, t2) == 0);
  CHECK(auth_check(&k, AUTH_CLIENT, t2, mc) == -EACCES);
  mc[31] ^= 0x80;
  CHECK(auth_check(&k, AUTH_CLIENT, t, mc) == -EACCES);

  /* Key files: newline dropped, too short refused, missing file. */
  char path[] = "/tmp/test_auth.XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK(write(fd, "a-long-enough-secret\r\n", 22) == 22);
  close(fd);
  CHECK(auth_key_load(&k2, path, &why) == 0 && k2.len == 20 &&
        memcmp(k2.key, "a-long-enough-secret", 20) == 0);
  fd = open(path, O_WRONLY | O_TRUNC);
  CHECK(fd >= 0 && write(fd, "tiny", 4) == 4);
  close(fd);
  CHECK(auth_key_load(&k2, path, &why) == -EINVAL);
  unlink(path);
  CHECK(auth_key_load(&k2, path, &why) == -ENOENT);
  auth_key_wipe(&k);
  CHECK(k.len == 0);
}

int main(void)
{
  test_rfc4231();
  test_proof();
  return test_done("test_auth");
}
