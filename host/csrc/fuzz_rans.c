/* Fuzz harness for lic_rans.c, meant to be built with -fsanitize=address,undefined (make -C host/csrc fuzz):
 * every stream of a corpus (tests/fuzz_rans_asan.py writes it) is decoded intact, where it must give
 * the expected symbols, then COUNT times mutated (bit flips, truncation, insertion, overwrite,
 * random bytes, extension, index changes, table corruption) and decoded from buffers of exactly
 * the mutated size, so any read or write out of bounds stops the run under ASan.
 *
 *   fuzz_rans CORPUS SEED COUNT
 *
 * Corpus, little-endian: "LICRFZ1\0", int32 n_rows, row_stride, cdf[n_rows * row_stride],
 * cdf_length[n_rows], offset[n_rows], uint32 n_streams, then per stream: uint32 nbytes, bytes,
 * uint32 n, int32 indexes[n], int32 expected[n]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lic_rans.h"

struct stream { uint8_t *bytes; uint32_t nbytes, n; int32_t *indexes, *expected; };

static uint64_t rng_state;
static uint64_t next(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}
static uint32_t below(uint32_t n) { return n ? (uint32_t)(next() % n) : 0; }

static void need(int ok, const char *what) {
  if (!ok) { fprintf(stderr, "fuzz_rans: %s\n", what); exit(2); }
}
static void *read_n(FILE *f, size_t size) {
  void *p = malloc(size ? size : 1);
  need(p && fread(p, 1, size, f) == size, "corpus truncated");
  return p;
}
static uint32_t read_u32(FILE *f) { uint32_t v; need(fread(&v, 4, 1, f) == 1, "corpus truncated"); return v; }

int main(int argc, char **argv) {
  need(argc == 4, "usage: fuzz_rans CORPUS SEED COUNT");
  FILE *f = fopen(argv[1], "rb");
  need(f != NULL, "cannot open the corpus");
  char magic[8];
  need(fread(magic, 1, 8, f) == 8 && memcmp(magic, "LICRFZ1", 8) == 0, "not a fuzz corpus");
  int32_t n_rows = (int32_t)read_u32(f), stride = (int32_t)read_u32(f);
  need(n_rows > 0 && stride > 0 && n_rows < 100000 && stride < 100000, "bad table size");
  int32_t *cdf = read_n(f, (size_t)n_rows * stride * 4), *len = read_n(f, (size_t)n_rows * 4),
          *off = read_n(f, (size_t)n_rows * 4);
  uint32_t n_streams = read_u32(f);
  need(n_streams > 0 && n_streams < 100000, "bad stream count");
  struct stream *s = calloc(n_streams, sizeof *s);
  for (uint32_t k = 0; k < n_streams; ++k) {
    s[k].nbytes = read_u32(f);
    s[k].bytes = read_n(f, s[k].nbytes);
    s[k].n = read_u32(f);
    s[k].indexes = read_n(f, (size_t)s[k].n * 4);
    s[k].expected = read_n(f, (size_t)s[k].n * 4);
  }
  fclose(f);
  rng_state = strtoull(argv[2], NULL, 10) * 0x9E3779B97F4A7C15ull + 1;
  long count = strtol(argv[3], NULL, 10);

  lic_rans_tables *tables;
  need(lic_rans_tables_new(cdf, n_rows, stride, len, off, &tables) == LIC_RANS_OK, "corpus tables rejected");
  for (uint32_t k = 0; k < n_streams; ++k) { /* intact streams decode to the expected symbols */
    int32_t *out = malloc((size_t)s[k].n * 4 + 1);
    int st = lic_rans_decode(tables, s[k].bytes, s[k].nbytes, s[k].indexes, s[k].n, out, NULL);
    need(st == LIC_RANS_OK && memcmp(out, s[k].expected, (size_t)s[k].n * 4) == 0, "intact stream misdecoded");
    free(out);
  }

  long by_status[16] = {0}, same_as_intact = 0;
  for (long it = 0; it < count; ++it) {
    const struct stream *src = &s[below(n_streams)];
    uint32_t kind = below(9);
    uint32_t nbytes = src->nbytes, n = src->n;
    if (kind == 3) nbytes += 1 + below(64);                      /* insert */
    if (kind == 5) nbytes = below(2 * src->nbytes + 16);          /* random bytes */
    if (kind == 6) nbytes += 4 * (1 + below(4));                  /* extend */
    if (kind == 8) n = below(2 * src->n + 2);                     /* fewer or more symbols */
    uint8_t *buf = malloc(nbytes ? nbytes : 1);
    int32_t *idx = malloc((size_t)n * 4 + 1), *out = malloc((size_t)n * 4 + 1);
    memcpy(buf, src->bytes, nbytes < src->nbytes ? nbytes : src->nbytes);
    for (uint32_t j = 0; j < n; ++j) idx[j] = j < src->n ? src->indexes[j] : (int32_t)below((uint32_t)n_rows);
    switch (kind) {
    case 0: /* flip bits */
      for (uint32_t j = 1 + below(8); j-- && nbytes;) buf[below(nbytes)] ^= (uint8_t)(1u << below(8));
      break;
    case 1: /* truncate */
      nbytes = below(nbytes);
      break;
    case 2: /* overwrite a range */
      if (nbytes) for (uint32_t a = below(nbytes), b = a + 1 + below(32); a < b && a < nbytes; ++a) buf[a] = (uint8_t)next();
      break;
    case 3: { /* insert random bytes at a random place */
      uint32_t at = below(src->nbytes + 1), k = nbytes - src->nbytes;
      memcpy(buf + at + k, src->bytes + at, src->nbytes - at);
      for (uint32_t j = 0; j < k; ++j) buf[at + j] = (uint8_t)next();
      break;
    }
    case 4: /* the first eight bytes: the initial state */
      for (uint32_t j = 0; j < 8 && j < nbytes; ++j) if (below(2)) buf[j] = (uint8_t)next();
      break;
    case 5: case 6: /* random bytes; extended with random bytes */
      for (uint32_t j = kind == 5 ? 0 : src->nbytes; j < nbytes; ++j) buf[j] = (uint8_t)next();
      break;
    case 7: /* indexes out of range or changed */
      for (uint32_t j = 1 + below(4); j-- && n;) idx[below(n)] = (int32_t)next();
      break;
    default:
      break;
    }
    size_t where;
    int st = lic_rans_decode(tables, buf, nbytes, idx, n, out, &where);
    need(st >= 0 && st < 16, "status out of range");
    need(where <= n, "error position out of range");
    by_status[st]++;
    if (st == LIC_RANS_OK && n == src->n && memcmp(out, src->expected, (size_t)n * 4) == 0) same_as_intact++;
    free(buf); free(idx); free(out);

    if (it % 1000 == 0) { /* corrupt tables are refused or accepted, never overrun */
      int32_t *bad = malloc((size_t)n_rows * stride * 4), *blen = malloc((size_t)n_rows * 4);
      memcpy(bad, cdf, (size_t)n_rows * stride * 4);
      memcpy(blen, len, (size_t)n_rows * 4);
      uint32_t r = below((uint32_t)n_rows);
      if (below(2)) bad[(size_t)r * stride + below((uint32_t)stride)] = (int32_t)next();
      else blen[r] = (int32_t)next() % (stride + 2);
      lic_rans_tables *t2;
      int ts = lic_rans_tables_new(bad, n_rows, stride, blen, off, &t2);
      need(ts == LIC_RANS_OK || ts == LIC_RANS_ERR_TABLE, "table status");
      lic_rans_tables_free(ts == LIC_RANS_OK ? t2 : NULL);
      free(bad); free(blen);
    }
  }
  printf("fuzz_rans %s: %ld mutated streams, statuses:", argv[1], count);
  for (int k = 0; k < 16; ++k) if (by_status[k]) printf(" %s=%ld", lic_rans_strerror(k), by_status[k]);
  printf("; decoded to the original symbols anyway: %ld\n", same_as_intact);
  lic_rans_tables_free(tables);
  for (uint32_t k = 0; k < n_streams; ++k) { free(s[k].bytes); free(s[k].indexes); free(s[k].expected); }
  free(s); free(cdf); free(len); free(off);
  return 0;
}
