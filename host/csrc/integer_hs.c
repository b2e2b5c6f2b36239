/* One layer of the integer hyper-decoder (host/integer_hyper.py defines it; this is its fast path):
 *
 *     acc[o, y, x] = sum_{c, ky, kx} w[o, c, ky, kx] * a[c, y + ky - k/2, x + kx - k/2]   (zero padding)
 *     out[o, y, x] = #{ j : thr[o, j] <= acc[o, y, x] }                                  (rows sorted)
 *
 * int8 weights, int16 activations (int8 z symbols, uint8 ReLU levels), int32 accumulators. The
 * caller (IntegerHyperSynthesis) checks once per model that sum|w| * max|a| < 2^31, so no sum can
 * overflow and the result is exact in any summation order: this equals the float64 reference bit
 * for bit. The inner loop is a multiply-accumulate over one row with a constant weight, which gcc
 * vectorises (NEON vmlal.s16 on ARMv7, SSE/AVX on x86) without intrinsics.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* upper_bound: thresholds passed by v in a sorted row of n. */
static inline int16_t count_passed(const int32_t *row, int n, int32_t v)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (row[mid] <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (int16_t)lo;
}

/* Returns 0, or -1 when scratch memory cannot be allocated (nothing is written then). */
int lic_hs_layer(const int16_t *a, int cin, int h, int w,
                 const int8_t *weight, int cout, int k,
                 const int32_t *thr, int nthr, int16_t *out)
{
    const int p = k / 2, hp = h + 2 * p, wp = w + 2 * p;
    int16_t *padded = calloc((size_t)cin * hp * wp, sizeof *padded);
    int32_t *acc = malloc((size_t)h * w * sizeof *acc);
    if (!padded || !acc) {
        free(padded);
        free(acc);
        return -1;
    }
    for (int c = 0; c < cin; c++)
        for (int y = 0; y < h; y++)
            memcpy(padded + ((size_t)c * hp + y + p) * wp + p, a + ((size_t)c * h + y) * w, w * sizeof *a);

    for (int o = 0; o < cout; o++) {
        memset(acc, 0, (size_t)h * w * sizeof *acc);
        for (int c = 0; c < cin; c++) {
            const int16_t *plane = padded + (size_t)c * hp * wp;
            const int8_t *wk = weight + ((size_t)o * cin + c) * k * k;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    const int32_t wv = wk[ky * k + kx];
                    if (wv == 0)
                        continue;
                    for (int y = 0; y < h; y++) {
                        const int16_t *src = plane + (size_t)(y + ky) * wp + kx;
                        int32_t *dst = acc + (size_t)y * w;
                        for (int x = 0; x < w; x++)
                            dst[x] += wv * src[x];
                    }
                }
        }
        const int32_t *row = thr + (size_t)o * nthr;
        int16_t *dst = out + (size_t)o * h * w;
        for (int i = 0; i < h * w; i++)
            dst[i] = count_passed(row, nthr, acc[i]);
    }
    free(padded);
    free(acc);
    return 0;
}
