/* lic_rans: a checked, table-driven decoder for CompressAI's rANS stream format.
 *
 * Streams are what compressai.ans.RansEncoder writes (ryg_rans' 64-bit rANS, 16-bit CDFs,
 * 4-bit bypass coding for values outside a CDF's range, 32-bit little-endian words). Decoding
 * gives the same symbols as compressai.ans.RansDecoder.decode_with_indexes on every stream that
 * coder can round-trip; on any other stream it stops with an error code instead of reading past
 * the end of the stream or the tables.
 *
 * Plain C99 with libc only, so it cross-compiles for the board (armhf) unchanged. The tables are
 * read-only after lic_rans_tables_new, so one table set can serve several threads at once.
 */
#ifndef LIC_RANS_H
#define LIC_RANS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum lic_rans_status {
  LIC_RANS_OK = 0,
  LIC_RANS_ERR_ARGS = 1,        /* null pointer or negative size */
  LIC_RANS_ERR_NOMEM = 2,
  LIC_RANS_ERR_TABLE = 3,       /* a CDF row is not 0 .. 65536, strictly increasing, or its values overflow int32 */
  LIC_RANS_ERR_INDEX = 4,       /* an index names no CDF row */
  LIC_RANS_ERR_TRUNCATED = 5,   /* the stream ran out before the last symbol */
  LIC_RANS_ERR_STATE = 6,       /* the initial state is outside the coder's interval */
  LIC_RANS_ERR_BYPASS = 7,      /* a bypass-coded value no encoder could have written */
  LIC_RANS_ERR_VALUE = 8,       /* value + offset does not fit int32 */
  LIC_RANS_ERR_TRAILING = 9     /* symbols decoded, but the stream does not end where it must */
};

typedef struct lic_rans_tables lic_rans_tables;

/* n CDF rows; row i is cdf[i * row_stride .. i * row_stride + cdf_length[i]) with
 * offset[i] (CompressAI's EntropyModel._quantized_cdf, _cdf_length, _offset). */
int lic_rans_tables_new(const int32_t *cdf, int32_t n, int32_t row_stride, const int32_t *cdf_length,
                        const int32_t *offset, lic_rans_tables **out);
void lic_rans_tables_free(lic_rans_tables *tables);

/* Decode n symbols from stream[0 .. nbytes), symbol i with CDF row indexes[i], into out[i].
 * On failure returns a status and, when where != NULL, the number of symbols decoded before it. */
int lic_rans_decode(const lic_rans_tables *tables, const uint8_t *stream, size_t nbytes,
                    const int32_t *indexes, size_t n, int32_t *out, size_t *where);

/* The same for a 3-D region of symbols, decoded in C order (a, b, c) with 0 <= a < n0, b < n1,
 * c < n2: symbol (a, b, c) takes its CDF row from indexes[a * index_stride0 + b * index_stride1 + c]
 * and goes to out[a * out_stride0 + b * out_stride1 + c] (strides in elements). A tile's window of
 * a whole frame's index and output arrays is decoded in place, without copies. `where` counts
 * symbols in that order. */
int lic_rans_decode_region(const lic_rans_tables *tables, const uint8_t *stream, size_t nbytes,
                           const int32_t *indexes, int32_t *out, size_t n0, size_t n1, size_t n2,
                           ptrdiff_t index_stride0, ptrdiff_t index_stride1,
                           ptrdiff_t out_stride0, ptrdiff_t out_stride1, size_t *where);

const char *lic_rans_strerror(int status);

#ifdef __cplusplus
}
#endif
#endif
