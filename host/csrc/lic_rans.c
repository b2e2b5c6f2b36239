/* Checked, table-driven decoding of CompressAI's rANS streams: see lic_rans.h.
 *
 * The coder is ryg_rans' Rans64 as CompressAI 1.2.8 uses it (compressai/cpp_exts/rans): state x in
 * [2^31, 2^63), 16-bit CDFs, renormalisation by one 32-bit word. A CDF row of length L codes the
 * values 0 .. L-2; value L-2 is an escape, followed by the real value in 4-bit bypass digits
 * (a count of digits, then the digits, low first), as the encoder's bypass mode writes them.
 *
 * CompressAI finds each symbol with a linear search of its CDF. Here each row carries a lookup
 * table: bucket b = the top LUT_BITS bits of the 16-bit slot gives the symbols whose intervals hold
 * the bucket's first and last slot; the symbol lies between them, usually the first or the next.
 * A wide bucket (a flat tail of many rare symbols) is bisected first, so an adversarial stream
 * costs O(log L) per symbol, not O(L). */
#include "lic_rans.h"

#include <stdlib.h>
#include <string.h>

#define PRECISION 16
#define SLOTS (1u << PRECISION)
#define LUT_BITS 8
#define LUT_SHIFT (PRECISION - LUT_BITS)
#define LUT_SIZE ((1u << LUT_BITS) + 1)
#define RANS_L (1ull << 31)       /* lower bound of the normalised state */
#define BYPASS_BITS 4
#define BYPASS_MAX ((1u << BYPASS_BITS) - 1)
/* CompressAI's encoder counts digits with `raw >> (n * 4) != 0` on a uint32: for an 8-digit raw
 * value (>= 2^28) that shifts by 32, which is undefined and on x86 loops forever. So no stream it
 * writes has more than 7 digits; more means a corrupt stream. */
#define MAX_BYPASS_DIGITS 7

struct row {
  const uint32_t *cdf;   /* cdf[0] = 0 < ... < cdf[max_value + 1] = SLOTS */
  const uint16_t *lut;   /* 2^LUT_BITS + 1 entries */
  int32_t max_value;     /* L - 2: the escape symbol */
  int32_t offset;
};

struct lic_rans_tables {
  int32_t n;
  struct row *rows;
  uint32_t *cdf_pool;
  uint16_t *lut_pool;
};

const char *lic_rans_strerror(int status) {
  switch (status) {
  case LIC_RANS_OK: return "ok";
  case LIC_RANS_ERR_ARGS: return "bad arguments";
  case LIC_RANS_ERR_NOMEM: return "out of memory";
  case LIC_RANS_ERR_TABLE: return "CDF table is not a valid 16-bit CDF";
  case LIC_RANS_ERR_INDEX: return "CDF index out of range";
  case LIC_RANS_ERR_TRUNCATED: return "rANS stream ends early";
  case LIC_RANS_ERR_STATE: return "rANS state out of its interval";
  case LIC_RANS_ERR_BYPASS: return "bypass-coded value out of range";
  case LIC_RANS_ERR_VALUE: return "decoded value does not fit int32";
  case LIC_RANS_ERR_TRAILING: return "rANS stream does not end after the last symbol";
  default: return "unknown error";
  }
}

void lic_rans_tables_free(lic_rans_tables *t) {
  if (!t) return;
  free(t->rows);
  free(t->cdf_pool);
  free(t->lut_pool);
  free(t);
}

int lic_rans_tables_new(const int32_t *cdf, int32_t n, int32_t row_stride, const int32_t *cdf_length,
                        const int32_t *offset, lic_rans_tables **out) {
  if (!out) return LIC_RANS_ERR_ARGS;
  *out = NULL;
  if (!cdf || !cdf_length || !offset || n <= 0 || row_stride < 2) return LIC_RANS_ERR_ARGS;
  size_t total = 0;
  for (int32_t i = 0; i < n; ++i) {
    int32_t len = cdf_length[i];
    if (len < 2 || len > row_stride || len > (int32_t)SLOTS + 1) return LIC_RANS_ERR_TABLE;
    total += (size_t)len;
  }
  lic_rans_tables *t = calloc(1, sizeof *t);
  if (!t) return LIC_RANS_ERR_NOMEM;
  t->n = n;
  t->rows = calloc((size_t)n, sizeof *t->rows);
  t->cdf_pool = malloc(total * sizeof *t->cdf_pool);
  t->lut_pool = malloc((size_t)n * LUT_SIZE * sizeof *t->lut_pool);
  if (!t->rows || !t->cdf_pool || !t->lut_pool) {
    lic_rans_tables_free(t);
    return LIC_RANS_ERR_NOMEM;
  }
  uint32_t *c = t->cdf_pool;
  uint16_t *lut = t->lut_pool;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t *src = cdf + (size_t)i * (size_t)row_stride;
    int32_t len = cdf_length[i];
    if (src[0] != 0 || src[len - 1] != (int32_t)SLOTS) goto bad;
    if ((int64_t)offset[i] + (len - 2) > INT32_MAX) goto bad;  /* every in-range value then fits int32 */
    for (int32_t j = 0; j + 1 < len; ++j)
      if (src[j + 1] <= src[j]) goto bad;
    for (int32_t j = 0; j < len; ++j) c[j] = (uint32_t)src[j];
    /* lut[b] = the symbol s with cdf[s] <= b << LUT_SHIFT < cdf[s + 1] */
    uint32_t s = 0;
    for (uint32_t b = 0; b < (1u << LUT_BITS); ++b) {
      uint32_t slot = b << LUT_SHIFT;
      while (c[s + 1] <= slot) ++s;
      lut[b] = (uint16_t)s;
    }
    lut[1u << LUT_BITS] = (uint16_t)(len - 2); /* holds the last slot, SLOTS - 1 */
    t->rows[i].cdf = c;
    t->rows[i].lut = lut;
    t->rows[i].max_value = len - 2;
    t->rows[i].offset = offset[i];
    c += len;
    lut += LUT_SIZE;
  }
  *out = t;
  return LIC_RANS_OK;
bad:
  lic_rans_tables_free(t);
  return LIC_RANS_ERR_TABLE;
}

static inline uint32_t read_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Renormalise: a state that fell below RANS_L takes the next 32-bit word. */
#define REFILL(x)                                                   \
  do {                                                              \
    if ((x) < RANS_L) {                                             \
      if (end - p < 4) { status = LIC_RANS_ERR_TRUNCATED; goto fail; } \
      (x) = ((x) << 32) | read_le32(p);                             \
      p += 4;                                                       \
    }                                                               \
  } while (0)

/* Bisection for a wide bucket (a flat run of rare symbols): kept out of the symbol loop, which it
 * would otherwise crowd out of the registers. Invariant: cdf[s] <= slot < cdf[hi + 1]. */
static uint32_t narrow(const uint32_t *cdf, uint32_t s, uint32_t hi, uint32_t slot) {
  while (hi - s > 4) {
    const uint32_t mid = (s + hi + 1) >> 1;
    if (cdf[mid] <= slot) s = mid; else hi = mid - 1;
  }
  return s;
}

int lic_rans_decode_region(const lic_rans_tables *t, const uint8_t *stream, size_t nbytes,
                           const int32_t *indexes, int32_t *out, size_t n0, size_t n1, size_t n2,
                           ptrdiff_t index_stride0, ptrdiff_t index_stride1,
                           ptrdiff_t out_stride0, ptrdiff_t out_stride1, size_t *where) {
  int status = LIC_RANS_OK;
  size_t a = 0, b = 0;
  const int32_t *ip = indexes;
  int32_t *op = out, *run = out;  /* the symbol's output and the start of its run, for `where` */
  if (where) *where = 0;
  if (n1 && n2 && n0 > SIZE_MAX / n1 / n2) return LIC_RANS_ERR_ARGS;
  const size_t n = n0 * n1 * n2;
  if (!t || (!stream && nbytes) || (n && (!indexes || !out))) return LIC_RANS_ERR_ARGS;
  const uint8_t *p = stream, *end = stream + nbytes;
  if (nbytes < 8) return n ? LIC_RANS_ERR_TRUNCATED : LIC_RANS_ERR_TRAILING;
  uint64_t x = (uint64_t)read_le32(p) | (uint64_t)read_le32(p + 4) << 32;
  p += 8;
  if (x < RANS_L || (x >> 63)) return LIC_RANS_ERR_STATE;
  const uint32_t n_rows = (uint32_t)t->n;
  const struct row *rows = t->rows;

  for (a = 0; a < n0; ++a)
    for (b = 0; b < n1; ++b) {
      /* pointers, not counters, in the symbol loop: on a 32-bit ARM every register counts */
      ip = indexes + (ptrdiff_t)a * index_stride0 + (ptrdiff_t)b * index_stride1;
      const int32_t *const run_end = ip + n2;
      run = op = out + (ptrdiff_t)a * out_stride0 + (ptrdiff_t)b * out_stride1;
      for (; ip != run_end; ++ip, ++op) {
        const uint32_t idx = (uint32_t)*ip;
        if (idx >= n_rows) { status = LIC_RANS_ERR_INDEX; goto fail; }
        const struct row *r = rows + idx;
        const uint32_t *cdf = r->cdf;
        const uint32_t slot = (uint32_t)x & (SLOTS - 1);
        uint32_t s = r->lut[slot >> LUT_SHIFT];
        const uint32_t hi = r->lut[(slot >> LUT_SHIFT) + 1];
        if (s != hi) {  /* else the whole bucket is symbol s: the usual case for a peaked CDF */
          if (hi - s > 4) s = narrow(cdf, s, hi, slot);
          while (cdf[s + 1] <= slot) ++s;
        }
        const uint32_t start = cdf[s];
        x = (uint64_t)(cdf[s + 1] - start) * (x >> PRECISION) + (slot - start);
        REFILL(x);
        if ((int32_t)s != r->max_value) {
          *op = (int32_t)s + r->offset;  /* fits: the table's offset + max_value was checked */
          continue;
        }
        /* digit count (a count of 15 would continue in the next digit; valid counts never reach it) */
        const uint32_t n_digits = (uint32_t)(x & BYPASS_MAX);
        x >>= BYPASS_BITS;
        REFILL(x);
        if (n_digits > MAX_BYPASS_DIGITS) { status = LIC_RANS_ERR_BYPASS; goto fail; }
        uint64_t raw = 0;
        for (uint32_t j = 0; j < n_digits; ++j) {
          raw |= (x & BYPASS_MAX) << (j * BYPASS_BITS);
          x >>= BYPASS_BITS;
          REFILL(x);
        }
        const int64_t value = ((raw & 1) ? -(int64_t)(raw >> 1) - 1 : (int64_t)(raw >> 1) + r->max_value) + r->offset;
        if (value < INT32_MIN || value > INT32_MAX) { status = LIC_RANS_ERR_VALUE; goto fail; }
        *op = (int32_t)value;
      }
    }
  /* The encoder started from RANS_L and wrote every word the decoder reads: a complete stream
   * leaves exactly that state and no bytes. */
  if (x != RANS_L || p != end) { status = LIC_RANS_ERR_TRAILING; goto fail; }
  if (where) *where = n;
  return LIC_RANS_OK;
fail:
  if (where) *where = a < n0 ? (a * n1 + b) * n2 + (size_t)(op - run) : n;
  return status;
}

int lic_rans_decode(const lic_rans_tables *t, const uint8_t *stream, size_t nbytes,
                    const int32_t *indexes, size_t n, int32_t *out, size_t *where) {
  return lic_rans_decode_region(t, stream, nbytes, indexes, out, 1, 1, n, 0, 0, 0, 0, where);
}
