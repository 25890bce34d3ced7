/* Unit test: the bytes that cross hosts do not depend on the host.
 *
 * A volume may mix architectures (docs/DESIGN.md "Portability": the
 * Raspberry Pi's arm64 upstairs against x86-64 downstairs, regions moved
 * between them), so everything one host writes and another reads is
 * pinned here to fixed bytes computed once: a block's ciphertext, tag and
 * hash (AAD = uuid || LBA || version, little-endian), the plain hash, a
 * context and a frame header on the wire, an extent's path.  Round-trip
 * tests pass even when both ends share a host's byte order or char
 * signedness; these fail on the first host that disagrees.  Run natively,
 * with -funsigned-char (make check-unsigned-char) and under qemu-user
 * (make check-arm64).  The last part feeds bytes >= 0x80 to the text
 * parsers, which read them through plain char: signed on x86, unsigned on
 * arm64; both must refuse them the same way.  The block's tag and
 * ciphertext agree with Python's cryptography AESGCM over the same key,
 * nonce and AAD. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "../../common/base64.h"
#include "../../common/crypt.h"
#include "../../common/geom.h"
#include "../../common/parse.h"
#include "../../common/proto.h"
#include "../../downstairs/extent.h"
#include "test.h"

/* Hex of n bytes into out (2n + 1). */
static void tohex(const uint8_t *p, size_t n, char *out)
{
  for (size_t i = 0; i < n; i++)
    snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* CHECK that p[0..n) is the hex string want, printing what it is. */
#define CHECK_HEX(p, n, want)                                             \
  do {                                                                    \
    char got_[2 * 256 + 1];                                               \
    tohex((p), (n), got_);                                                \
    if (strcmp(got_, (want)) != 0)                                        \
      fprintf(stderr, "%s:%d: %s is %s\n", __FILE__, __LINE__, #p, got_); \
    CHECK(strcmp(got_, (want)) == 0);                                     \
  } while (0)

#define CHECK_U64(v, want)                                                   \
  do {                                                                       \
    uint64_t v_ = (v);                                                       \
    if (v_ != (want))                                                        \
      fprintf(stderr, "%s:%d: %s is 0x%016" PRIx64 "\n", __FILE__, __LINE__, \
              #v, v_);                                                       \
    CHECK(v_ == (want));                                                     \
  } while (0)

/* One encrypted block with fixed key, nonce, uuid, LBA and version. */
static void test_block(void)
{
  uint8_t raw[CRYPT_KEY_LEN], uuid[CRYPT_UUID_LEN], nonce[CRYPT_NONCE_LEN];
  uint8_t plain[4096], ct[4096], tag[CRYPT_TAG_LEN], back[4096];
  struct crypt_key *k;
  for (int i = 0; i < CRYPT_KEY_LEN; i++)
    raw[i] = (uint8_t) (i * 7 + 1);
  for (int i = 0; i < CRYPT_UUID_LEN; i++)
    uuid[i] = (uint8_t) (0xf0 + i);
  for (int i = 0; i < CRYPT_NONCE_LEN; i++)
    nonce[i] = (uint8_t) (0x80 + i);
  for (int i = 0; i < 4096; i++)
    plain[i] = (uint8_t) (i * 31 + (i >> 8));
  CHECK(crypt_key_new(raw, &k) == 0);
  const uint64_t lba = 0x0102030405060708ull, ver = (3ull << 32) | 0x89abcdef;
  CHECK(crypt_block_encrypt_nonce(k, uuid, lba, ver, plain, 4096, ct, nonce,
                                  tag) == 0);
  CHECK_HEX(tag, sizeof tag, "00c7e76431cefad6916453a34cb01754");
  CHECK_HEX(ct, 32,
            "5690c340be3cff091fb1043c398aaa1a"
            "10b81e2553303d9c3eca7f2ef4b8abb9");
  CHECK_HEX(ct + 4096 - 16, 16, "96eb7bd18ed2ff478903c131dcb93d54");
  CHECK_U64(crypt_hash_cipher(nonce, tag, ct, 4096), 0x13be94c8582b3714ull);
  CHECK_U64(crypt_hash_plain(plain, 4096), 0xbe855965eae8486bull);
  CHECK(crypt_block_decrypt(k, uuid, lba, ver, ct, 4096, nonce, tag, back) ==
        0);
  CHECK(memcmp(back, plain, 4096) == 0);
  crypt_key_free(k);
}

/* A context and a WRITE header as they go on the wire. */
static void test_wire(void)
{
  struct proto_ctx c = {.version = 0x0102030405060708ull,
                        .hash = 0xf1f2f3f4f5f6f7f8ull,
                        .flags = PROTO_CTX_PRESENT | PROTO_CTX_BAD};
  for (int i = 0; i < PROTO_NONCE_LEN; i++)
    c.nonce[i] = (uint8_t) (0x80 + i);
  for (int i = 0; i < PROTO_TAG_LEN; i++)
    c.tag[i] = (uint8_t) (0xc0 + i);
  uint8_t b[256];
  proto_ctx_put(b, &c);
  /* version, hash, nonce, tag, flags: little-endian, no padding. */
  CHECK_HEX(b, PROTO_CTX_LEN,
            "0807060504030201"
            "f8f7f6f5f4f3f2f1"
            "808182838485868788898a8b"
            "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
            "03000000");
  struct proto_ctx back;
  proto_ctx_get(b, &back);
  CHECK(back.version == c.version && back.hash == c.hash &&
        back.flags == c.flags && memcmp(back.tag, c.tag, sizeof c.tag) == 0);
  size_t n = proto_put_write_hdr(b, 0xa1a2a3a4a5a6a7a8ull,
                                 0x8000000000000001ull, 3, 4096);
  CHECK(n > 0 && n <= sizeof b);
  /* length (32 + 3 contexts + 3 blocks), type 10, flags, job, lba, n. */
  CHECK_HEX(b, n,
            "b0300000"
            "0a000000"
            "a8a7a6a5a4a3a2a1"
            "0100000000000080"
            "03000000"
            "00000000");
  char p[EXT_PATH_MAX];
  ext_path(0xfedcba98u, p);
  CHECK(strcmp(p, "FE/DCB/A98") == 0);
}

/* Bytes >= 0x80 in text input: refused alike whatever char's sign. */
static void test_high_bytes(void)
{
  uint8_t out[64], u[PROTO_UUID_LEN];
  size_t len;
  char host[PARSE_HOST_MAX];
  uint16_t port;
  uint64_t v;
  CHECK(base64_decode("QUJD", out, sizeof out, &len) == 0 && len == 3);
  CHECK(base64_decode("QU\xc2\xbf", out, sizeof out, &len) == -EINVAL);
  CHECK(base64_decode("\xff\xff\xff\xff", out, sizeof out, &len) == -EINVAL);
  CHECK(base64_decode("QUJD\xa0", out, sizeof out, &len) == -EINVAL);
  CHECK(geom_uuid_parse("00112233-4455-6677-8899-aabbccddeef\xe6", u) ==
        -EINVAL);
  CHECK(geom_uuid_parse("\xb0\xb1"
                        "112233-4455-6677-8899-aabbccddeeff",
                        u) == -EINVAL);
  CHECK(parse_u64("1\xb2", UINT64_MAX, &v) < 0);
  CHECK(parse_u64("\xb9", UINT64_MAX, &v) < 0);
  CHECK(parse_hostport("host:38\xb1", host, &port) < 0);
  /* A name is passed on to getaddrinfo as it is. */
  CHECK(parse_hostport("h\xc3\xa9:3810", host, &port) == 0 && port == 3810 &&
        strcmp(host, "h\xc3\xa9") == 0);
}

int main(void)
{
  test_block();
  test_wire();
  test_high_bytes();
  return test_done("test_portable");
}
