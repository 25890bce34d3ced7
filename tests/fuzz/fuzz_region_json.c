/* crucible-c fuzz harness: the strict region.json parser
 * (downstairs/region_json.c), which reads a file an operator or a
 * corrupted disk may have changed.
 *
 * The parser is static, so this file includes region_json.c.  The input
 * is handled like region_meta_read does (rejected if it holds a NUL or
 * is too long), parsed, and a document that parses must format with
 * json_format and parse back to the same values.
 */
#include "../../downstairs/region_json.c"

#include <stdlib.h>

/* Field by field: struct padding is not compared. */
static int meta_equal(const struct region_meta *a, const struct region_meta *b)
{
  return a->def.block_size == b->def.block_size &&
         a->def.extent_count == b->def.extent_count &&
         a->def.extent_size == b->def.extent_size &&
         memcmp(a->def.uuid, b->def.uuid, PROTO_UUID_LEN) == 0 &&
         a->def.encrypted == b->def.encrypted &&
         a->highest_gen == b->highest_gen && a->has_kcv == b->has_kcv &&
         (!a->has_kcv || memcmp(&a->kcv, &b->kcv, sizeof a->kcv) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size >= REGION_JSON_MAX || memchr(data, '\0', size))
    return 0;
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  struct region_meta m, m2;
  if (json_parse(text, &m) == 0) {
    char buf[REGION_JSON_MAX];
    int n = json_format(&m, buf);
    if (n < 0 || json_parse(buf, &m2) != 0 || !meta_equal(&m, &m2))
      abort();
  }
  free(text);
  return 0;
}
