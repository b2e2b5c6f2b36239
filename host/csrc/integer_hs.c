/* One layer of the integer hyper-decoder (host/integer_hyper.py defines it; this is its fast path):
 *
 *     acc[o, y, x] = sum_{c, ky, kx} w[o, c, ky, kx] * a[c, y + ky - k/2, x + kx - k/2]   (zero padding)
 *     out[o, y, x] = #{ j : thr[o, j] <= acc[o, y, x] }                                  (rows sorted)
 *
 * int8 weights (held as int16), int16 activations (int8 z symbols, uint8 ReLU levels), int32
 * accumulators. The caller (IntegerHyperSynthesis) checks once per model that sum|w| * max|a| < 2^31,
 * so no sum can overflow and the result is exact in any summation order: this equals the float64
 * reference bit for bit. The inner loop multiplies one activation into a contiguous row of output
 * channels, which gcc vectorises (NEON vmlal.s16 on ARMv7, SSE2/AVX on x86) without intrinsics.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __ARM_NEON
#include <arm_neon.h>
#endif

/* Output channels accumulated together: 32 int32 = eight of the sixteen NEON q registers. */
#define LIC_HS_BLOCK 32

/* out[j * stride] = #{ t : thr[j][t] <= acc[j] } for the LIC_HS_BLOCK channels of one pixel. Rows
 * are sorted and hold n = 2^m - 1 entries (the caller pads them with INT32_MAX, which no accumulator
 * reaches), so this is a binary search of exactly m steps without branches, unrolled for each m a
 * layer with up to 8-bit outputs has. */
#define LIC_HS_SEARCH(M)                                                                    \
    for (int j = 0; j < LIC_HS_BLOCK; j++) {                                                \
        const int32_t *row = thr + (size_t)j * n, v = acc[j];                               \
        int lo = 0;                                                                         \
        for (int s = 1 << ((M) - 1); s; s >>= 1)                                            \
            lo += row[lo + s - 1] <= v ? s : 0;                                             \
        out[(size_t)j * stride] = (int16_t)lo;                                              \
    }                                                                                       \
    break
static void count_passed(const int32_t *restrict acc, const int32_t *restrict thr, int n,
                         int16_t *restrict out, size_t stride)
{
    switch (n) {
    case 255: LIC_HS_SEARCH(8);
    case 127: LIC_HS_SEARCH(7);
    case 63: LIC_HS_SEARCH(6);
    case 31: LIC_HS_SEARCH(5);
    case 15: LIC_HS_SEARCH(4);
    case 7: LIC_HS_SEARCH(3);
    case 3: LIC_HS_SEARCH(2);
    case 1: LIC_HS_SEARCH(1);
    default:
        for (int j = 0; j < LIC_HS_BLOCK; j++) {
            const int32_t *row = thr + (size_t)j * n, v = acc[j];
            int lo = 0;
            for (int s = (n + 1) >> 1; s; s >>= 1)
                lo += row[lo + s - 1] <= v ? s : 0;
            out[(size_t)j * stride] = (int16_t)lo;
        }
    }
}

/* block[j] = sum over the k x k window at src (row stride `stride`) and every input channel c of
 * src[ky][kx][c] * weight[ky][kx][c][j], for the LIC_HS_BLOCK output channels weight points at. */
static void window_dot(const int16_t *restrict src, int stride, const int16_t *restrict weight,
                       int k, int cin, int cout, int32_t *restrict block)
{
#ifdef __ARM_NEON
    /* What gcc's vectoriser does not do on its own: keep all 32 sums in registers. */
    int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
#else
    for (int j = 0; j < LIC_HS_BLOCK; j++)
        block[j] = 0;
#endif
    for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++) {
            const int16_t *a = src + (size_t)ky * stride + (size_t)kx * cin;
            const int16_t *wk = weight + (size_t)(ky * k + kx) * cin * cout;
            for (int c = 0; c < cin; c++) {
                const int16_t v = a[c];
                if (v == 0)
                    continue;
                const int16_t *wr = wk + (size_t)c * cout;
#ifdef __ARM_NEON
                const int16x8_t w0 = vld1q_s16(wr), w1 = vld1q_s16(wr + 8);
                const int16x8_t w2 = vld1q_s16(wr + 16), w3 = vld1q_s16(wr + 24);
                const int16x4_t vv = vdup_n_s16(v);
                s0 = vmlal_lane_s16(s0, vget_low_s16(w0), vv, 0);
                s1 = vmlal_lane_s16(s1, vget_high_s16(w0), vv, 0);
                s2 = vmlal_lane_s16(s2, vget_low_s16(w1), vv, 0);
                s3 = vmlal_lane_s16(s3, vget_high_s16(w1), vv, 0);
                s4 = vmlal_lane_s16(s4, vget_low_s16(w2), vv, 0);
                s5 = vmlal_lane_s16(s5, vget_high_s16(w2), vv, 0);
                s6 = vmlal_lane_s16(s6, vget_low_s16(w3), vv, 0);
                s7 = vmlal_lane_s16(s7, vget_high_s16(w3), vv, 0);
#else
                for (int j = 0; j < LIC_HS_BLOCK; j++)
                    block[j] += (int32_t)v * wr[j];
#endif
            }
        }
#ifdef __ARM_NEON
    vst1q_s32(block, s0);
    vst1q_s32(block + 4, s1);
    vst1q_s32(block + 8, s2);
    vst1q_s32(block + 12, s3);
    vst1q_s32(block + 16, s4);
    vst1q_s32(block + 20, s5);
    vst1q_s32(block + 24, s6);
    vst1q_s32(block + 28, s7);
#endif
}

/* a: activations [cin][h][w]; thr: [cout][nthr]. Computes the outputs of input rows [y0, y1), so
 * that threads can share a layer by rows (each reads its rows plus the kernel's halo of a and writes
 * only its own rows of out). Returns 0, or -1 when scratch memory cannot be allocated (nothing is
 * written then).
 *
 * up == 0: a 'same' k x k conv. weight: [k][k][cin][cout] (transposed so the channel loop is
 *          contiguous); out: [cout][h][w].
 * up == 1: nearest x2 upsampling, then a 'same' 3x3 conv, computed on the low-resolution map: each
 *          of the four output phases (py, px) sees a 2x2 window of a, whose weights are sums of the
 *          3x3 taps that land on the same input (host/integer_hyper.py makes them). 4 instead of 9
 *          products per output and no upsampled copy; the sums are integers, so still exact.
 *          weight: [py][px][2][2][cin][cout]; out: [cout][2h][2w].
 *
 * Output-stationary over channels: for each output pixel, acc[0..cout) += a * w[ky][kx][c][0..cout)
 * for every input value a under the window. Most z symbols and many ReLU levels are 0, and a zero
 * adds nothing, so those are skipped: exact, and most of the work on real inputs. */
int lic_hs_layer(const int16_t *restrict a, int cin, int h, int w,
                 const int16_t *restrict weight, int cout, int k, int up,
                 const int32_t *restrict thr, int nthr, int16_t *restrict out, int y0, int y1)
{
    const int p = up ? 1 : k / 2, hp = y1 - y0 + 2 * p, wp = w + 2 * p;
    const int phases = up ? 2 : 1, kw = up ? 2 : k, ho = h * phases, wo = w * phases;
    const size_t phase_size = (size_t)kw * kw * cin * cout;
    if (y0 < 0 || y1 > h || y0 >= y1)
        return 0;
    int16_t *padded = calloc((size_t)hp * wp * cin, sizeof *padded);   /* [hp][wp][cin], rows y0-p.. */
    if (!padded)
        return -1;
    for (int c = 0; c < cin; c++)
        for (int r = 0; r < hp; r++) {
            const int y = y0 - p + r;
            if (y < 0 || y >= h)
                continue;
            for (int x = 0; x < w; x++)
                padded[((size_t)r * wp + x + p) * cin + c] = a[((size_t)c * h + y) * w + x];
        }

    for (int y = y0; y < y1; y++)
        for (int py = 0; py < phases; py++)
            for (int x = 0; x < w; x++)
                for (int px = 0; px < phases; px++) {
                    const int16_t *src = padded + ((size_t)(y - y0 + py) * wp + x + px) * cin;
                    const int16_t *wph = weight + (size_t)(py * phases + px) * phase_size;
                    const size_t at = (size_t)(y * phases + py) * wo + x * phases + px;
                    for (int o0 = 0; o0 < cout; o0 += LIC_HS_BLOCK) {
                        int32_t block[LIC_HS_BLOCK];
                        window_dot(src, wp * cin, wph + o0, kw, cin, cout, block);
                        count_passed(block, thr + (size_t)o0 * nthr, nthr, out + (size_t)o0 * ho * wo + at,
                                     (size_t)ho * wo);
                    }
                }
    free(padded);
    return 0;
}
