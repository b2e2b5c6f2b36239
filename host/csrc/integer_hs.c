/* One layer of the integer hyper-decoder (host/integer_hyper.py defines it; this is its fast path):
 *
 *     acc[o, y, x] = sum_{c, ky, kx} w[o, c, ky, kx] * a[c, y + ky - k/2, x + kx - k/2]   (zero padding)
 *     out[o, y, x] = #{ j : thr[o, j] <= acc[o, y, x] }                                  (rows sorted)
 *
 * int8 weights (held as int16), activations as int16 inside (int8 z symbols, uint8 ReLU levels;
 * int32 in and out, the rANS decoder's type, so no conversions between layers and stages), int32
 * accumulators. The caller (IntegerHyperSynthesis) checks once per model that sum|w| * max|a| < 2^31,
 * so no sum can overflow and the result is exact in any summation order: this equals the float64
 * reference bit for bit. The inner loop multiplies one activation into a contiguous row of output
 * channels (NEON intrinsics on ARM; gcc vectorises the plain loop on x86).
 */
#include <stdint.h>
#include <stdlib.h>
#ifdef __ARM_NEON
#include <arm_neon.h>
#endif

/* Output channels accumulated together: 32 int32 = eight of the sixteen NEON q registers. */
#define LIC_HS_BLOCK 32

/* How to count the thresholds of one row fast. A row is a quantiser's decision levels, so its
 * entries are close to evenly spaced (ReLU levels exactly so, up to rounding; scale-table indexes
 * nearly so): a linear guess from the row's ends lands on the answer or next to it (kodim01, q3:
 * wrong for 702 of the 280,521 counts between a row's ends), and for most accumulators the guess
 * is provably the answer without reading the row (lic_hs_prepare). The rest are settled with two
 * compares, or by bisection for a row spaced any other way (an altered file's), so a count costs
 * O(log n) at worst. This replaced an 8-step binary search per count. */

/* Per output channel, what count_passed needs besides the row: six int32 arrays of `rows` entries
 * each, back to back (lic_hs_prepare fills them once per model; NEON loads four channels at once). */
enum { G_FIRST, G_LAST, G_MULT, G_N, G_BELOW, G_ABOVE, G_FIELDS };  /* G_FIELDS = 6, as host/integer_hyper.py allocates */

/* The guess for first <= v < last (first = row[0], last = row[n - 1]) is g = 1 + floor(f), at most
 * n - 1, with f = (v - first) * mult / 2^32 and mult ~ (n - 1) 2^32 / (last - first). It steps up at
 * B_k = first + ceil(k 2^32 / mult) where the row does at row[k]; let D be the largest
 * |B_k - row[k]|, k = 1 .. n - 2. With (v - first) * mult = k 2^32 + F (F the low 32 bits):
 * v - B_k >= F / mult - 1 and B_(k+1) - v >= (2^32 - F) / mult, so F > (D + 1) mult ("below") and
 * 2^32 - F > D mult ("above") put v more than D from both steps around it: then v passes row[j]
 * exactly when it passes B_j, for every j, and g is the count. Otherwise the row is read.
 * `n` leaves out the caller's INT32_MAX padding, which no accumulator passes. */
void lic_hs_prepare(const int32_t *restrict thr, int nthr, int rows, int32_t *restrict guesses)
{
    int32_t *first = guesses + (size_t)G_FIRST * rows, *last = guesses + (size_t)G_LAST * rows;
    int32_t *count = guesses + (size_t)G_N * rows;
    uint32_t *mult = (uint32_t *)guesses + (size_t)G_MULT * rows;
    uint32_t *below = (uint32_t *)guesses + (size_t)G_BELOW * rows;
    uint32_t *above = (uint32_t *)guesses + (size_t)G_ABOVE * rows;
    for (int j = 0; j < rows; j++) {
        const int32_t *row = thr + (size_t)j * nthr;
        int n = nthr;
        while (n > 0 && row[n - 1] == INT32_MAX)
            n--;
        count[j] = n;
        first[j] = n ? row[0] : 0;
        last[j] = n ? row[n - 1] : 0;
        const uint64_t span = n ? (uint64_t)((int64_t)row[n - 1] - row[0]) : 0;
        const uint64_t m64 = span ? ((uint64_t)(n - 1) << 32) / span : 0;
        const uint32_t m = m64 > UINT32_MAX ? UINT32_MAX : (uint32_t)m64;
        mult[j] = m;
        /* D, with ceil(k 2^32 / m) = k q + carry + (rem > 0), kept without a division per k */
        uint64_t d = 0;
        if (m) {
            const uint64_t q = ((uint64_t)1 << 32) / m, r = ((uint64_t)1 << 32) % m;
            uint64_t rem = 0, steps = 0;
            for (int k = 1; k <= n - 2; k++) {
                steps += q;
                rem += r;
                if (rem >= m) {
                    rem -= m;
                    steps++;
                }
                const int64_t b = (int64_t)row[0] + (int64_t)(steps + (rem > 0)), t = row[k];
                const uint64_t dev = (uint64_t)(b > t ? b - t : t - b);
                d = dev > d ? dev : d;
            }
        }
        /* margins of 2^32 or more: never sure, so always read the row (d < 2^34: no overflow) */
        const uint64_t lo = (d + 1) * m, hi = d * m;
        below[j] = lo > UINT32_MAX ? UINT32_MAX : (uint32_t)lo;
        above[j] = hi > UINT32_MAX ? UINT32_MAX : (uint32_t)hi;
    }
}

/* The first t in [lo, hi] with row[t] > v, given row[hi] > v. */
static int first_above(const int32_t *restrict row, int32_t v, int lo, int hi)
{
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (row[mid] > v)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The count for first <= v < last (in [1, n - 1]) from a guess in that range: usually the guess or
 * next to it, else bisection, so an oddly spaced row (an altered file's) costs O(log n). */
static inline int settle(const int32_t *restrict row, int n, int32_t v, int count)
{
    if (row[count] <= v)  /* too low (so count < n - 1) */
        return row[count + 1] > v ? count + 1 : first_above(row, v, count + 2, n - 1);
    if (row[count - 1] > v)  /* too high (so count >= 2, as row[0] <= v) */
        return row[count - 2] <= v ? count - 1 : first_above(row, v, 1, count - 2);
    return count;
}

/* out[j * stride] = #{ t : thr[j][t] <= acc[j] } for the LIC_HS_BLOCK channels o0 + j of one pixel;
 * g: lic_hs_prepare's arrays for all `rows` channels. */
static void count_passed(const int32_t *restrict acc, const int32_t *restrict thr, int nthr,
                         const int32_t *restrict g, int rows, int o0, int32_t *restrict out, size_t stride)
{
    const int32_t *first = g + (size_t)G_FIRST * rows + o0, *last = g + (size_t)G_LAST * rows + o0;
    const int32_t *n = g + (size_t)G_N * rows + o0;
    const uint32_t *mult = (const uint32_t *)g + (size_t)G_MULT * rows + o0;
#ifdef __ARM_NEON
    /* Four channels at a time: below, above or between the row's ends, the guess, and whether it is
     * sure (lic_hs_prepare); only a channel whose guess is not sure reads its row. */
    const uint32_t *below = (const uint32_t *)g + (size_t)G_BELOW * rows + o0;
    const uint32_t *above = (const uint32_t *)g + (size_t)G_ABOVE * rows + o0;
    for (int j = 0; j < LIC_HS_BLOCK; j += 4) {
        const int32x4_t v = vld1q_s32(acc + j), lo = vld1q_s32(first + j), nv = vld1q_s32(n + j);
        const uint32x4_t d = vsubq_u32(vreinterpretq_u32_s32(v), vreinterpretq_u32_s32(lo));
        const uint32x4_t m = vld1q_u32(mult + j);
        const uint64x2_t p0 = vmull_u32(vget_low_u32(d), vget_low_u32(m));
        const uint64x2_t p1 = vmull_u32(vget_high_u32(d), vget_high_u32(m));
        const uint32x4_t whole = vcombine_u32(vshrn_n_u64(p0, 32), vshrn_n_u64(p1, 32));
        const uint32x4_t frac = vcombine_u32(vmovn_u64(p0), vmovn_u64(p1));
        const uint32x4_t under = vcltq_s32(v, lo), over = vcgeq_s32(v, vld1q_s32(last + j));
        int32x4_t c = vminq_s32(vaddq_s32(vreinterpretq_s32_u32(whole), vdupq_n_s32(1)),
                                vsubq_s32(nv, vdupq_n_s32(1)));
        c = vbslq_s32(over, nv, c);
        c = vbslq_s32(under, vdupq_n_s32(0), c);
        const uint32x4_t rest = vreinterpretq_u32_s32(vnegq_s32(vreinterpretq_s32_u32(frac)));  /* 2^32 - F */
        const uint32x4_t sure = vorrq_u32(vorrq_u32(under, over),
                                          vandq_u32(vcgtq_u32(frac, vld1q_u32(below + j)),
                                                    vcgtq_u32(rest, vld1q_u32(above + j))));
        int32_t cs[4];
        vst1q_s32(cs, c);
        const uint32x2_t all = vand_u32(vget_low_u32(sure), vget_high_u32(sure));
        if ((vget_lane_u32(all, 0) & vget_lane_u32(all, 1)) != UINT32_MAX) {
            uint32_t ok[4];
            vst1q_u32(ok, sure);
            for (int l = 0; l < 4; l++)
                if (!ok[l])
                    cs[l] = settle(thr + (size_t)(j + l) * nthr, n[j + l], acc[j + l], cs[l]);
        }
        for (int l = 0; l < 4; l++)
            out[(size_t)(j + l) * stride] = cs[l];
    }
#else
    for (int j = 0; j < LIC_HS_BLOCK; j++) {
        const int32_t v = acc[j];
        int c;
        if (v < first[j]) {
            c = 0;
        } else if (v >= last[j]) {
            c = n[j];  /* also n = 0, whose first = last = 0 */
        } else {
            c = 1 + (int)(((uint64_t)((uint32_t)v - (uint32_t)first[j]) * mult[j]) >> 32);
            if (c > n[j] - 1)
                c = n[j] - 1;
            c = settle(thr + (size_t)j * nthr, n[j], v, c);
        }
        out[(size_t)j * stride] = c;
    }
#endif
}

/* block[j] = sum over the window's taps t and the nonzero inputs i listed at that tap of
 * value[t][i] * weight[tap[t] + offset[t][i] + j], for the LIC_HS_BLOCK output channels weight points at.
 * The lists are read where they are (each input pixel's, made once per layer), not copied per window. */
static void window_dot(const int16_t *const *restrict value, const int32_t *const *restrict offset,
                       const int *restrict nonzero, const int32_t *restrict tap, int taps,
                       const int16_t *restrict weight, int32_t *restrict block)
{
#ifdef __ARM_NEON
    /* All 32 sums stay in registers. vld4 reads 16 weights in one instruction, dealt round-robin to
     * four registers, so s0 holds channels 0, 4, 8, 12, s1 channels 1, 5, 9, 13, ...; vst4 deals
     * them back in order. */
    int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
#define LIC_HS_MAC(WR, VV, LANE)                                                            \
    do {                                                                                    \
        const int16x4x4_t lo = vld4_s16(WR), hi = vld4_s16((WR) + 16);                      \
        s0 = vmlal_lane_s16(s0, lo.val[0], VV, LANE);                                       \
        s1 = vmlal_lane_s16(s1, lo.val[1], VV, LANE);                                       \
        s2 = vmlal_lane_s16(s2, lo.val[2], VV, LANE);                                       \
        s3 = vmlal_lane_s16(s3, lo.val[3], VV, LANE);                                       \
        s4 = vmlal_lane_s16(s4, hi.val[0], VV, LANE);                                       \
        s5 = vmlal_lane_s16(s5, hi.val[1], VV, LANE);                                       \
        s6 = vmlal_lane_s16(s6, hi.val[2], VV, LANE);                                       \
        s7 = vmlal_lane_s16(s7, hi.val[3], VV, LANE);                                       \
    } while (0)
    for (int t = 0; t < taps; t++) {
        const int16_t *v = value[t], *w = weight + tap[t];
        const int32_t *o = offset[t];
        const int n = nonzero[t];
        int i = 0;
        for (; i + 4 <= n; i += 4) {  /* four values in one register, one lane each */
            const int16x4_t vv = vld1_s16(v + i);
            LIC_HS_MAC(w + o[i], vv, 0);
            LIC_HS_MAC(w + o[i + 1], vv, 1);
            LIC_HS_MAC(w + o[i + 2], vv, 2);
            LIC_HS_MAC(w + o[i + 3], vv, 3);
        }
        for (; i < n; i++) {
            const int16x4_t vv = vdup_n_s16(v[i]);
            LIC_HS_MAC(w + o[i], vv, 0);
        }
    }
#undef LIC_HS_MAC
    const int32x4x4_t first = {{s0, s1, s2, s3}}, second = {{s4, s5, s6, s7}};
    vst4q_s32(block, first);
    vst4q_s32(block + 16, second);
#else
    for (int j = 0; j < LIC_HS_BLOCK; j++)
        block[j] = 0;
    for (int t = 0; t < taps; t++)
        for (int i = 0; i < nonzero[t]; i++) {
            const int16_t *wr = weight + tap[t] + offset[t][i], v = value[t][i];
            for (int j = 0; j < LIC_HS_BLOCK; j++)
                block[j] += (int32_t)v * wr[j];
        }
#endif
}

/* a: activations [cin][h][w]; thr: [cout][nthr], rows sorted, padded with INT32_MAX; guesses: what
 * lic_hs_prepare(thr, nthr, cout, .) wrote (6 x cout int32), made once per model. Computes the
 * outputs of input rows [y0, y1), so that threads can share a layer by rows (each reads its rows
 * plus the kernel's halo of a and writes only its own rows of out). Returns 0, or -1 when scratch
 * memory cannot be allocated (nothing is written then).
 *
 * up == 0: a 'same' k x k conv. weight: [cout / 32][k][k][cin][32] (blocks of 32 output channels,
 *          each contiguous, the channel loop innermost); out: [cout][h][w].
 * up == 1: nearest x2 upsampling, then a 'same' 3x3 conv, computed on the low-resolution map: each
 *          of the four output phases (py, px) sees a 2x2 window of a, whose weights are sums of the
 *          3x3 taps that land on the same input (host/integer_hyper.py makes them). 4 instead of 9
 *          products per output and no upsampled copy; the sums are integers, so still exact.
 *          weight: [cout / 32][py][px][2][2][cin][32]; out: [cout][2h][2w].
 *
 * Output-stationary over channels: for each output pixel, acc[0..cout) += a * w[ky][kx][c][0..cout)
 * for every input value a under the window. Most z symbols and many ReLU levels are 0 (kodim01, q3:
 * 97.5% of z, about 40% of the ReLU levels), and a zero adds nothing, so only nonzero inputs are
 * multiplied: exact, and most of the work on real inputs. */
int lic_hs_layer(const int32_t *restrict a, int cin, int h, int w,
                 const int16_t *restrict weight, int cout, int k, int up,
                 const int32_t *restrict thr, int nthr, const int32_t *restrict guesses,
                 int32_t *restrict out, int y0, int y1)
{
    const int p = up ? 1 : k / 2, hp = y1 - y0 + 2 * p, wp = w + 2 * p;
    const int phases = up ? 2 : 1, kw = up ? 2 : k, ho = h * phases, wo = w * phases, taps = kw * kw;
    const size_t phase_size = (size_t)taps * cin * LIC_HS_BLOCK;
    if (y0 < 0 || y1 > h || y0 >= y1)
        return 0;
    /* Each input pixel's nonzero values and their weight offsets c * LIC_HS_BLOCK, listed once: windows
     * overlap (a 3x3 conv reads each pixel 9 times), so listing per window would repeat the work.
     * Padding pixels have empty lists. Rows y0 - p .. y1 + p - 1 of a, as [hp][wp]. */
    int *listed = calloc((size_t)hp * wp, sizeof *listed);
    int16_t *list_value = malloc((size_t)hp * wp * cin * sizeof *list_value);
    int32_t *list_offset = malloc((size_t)hp * wp * cin * sizeof *list_offset);
    const int16_t **value = malloc((size_t)taps * sizeof *value);
    const int32_t **offset = malloc((size_t)taps * sizeof *offset);
    int *nonzero = malloc((size_t)taps * sizeof *nonzero);
    int32_t *tap = malloc((size_t)taps * sizeof *tap);
    int32_t *counts = malloc((size_t)w * LIC_HS_BLOCK * sizeof *counts);
    int status = -1;
    if (!listed || !list_value || !list_offset || !value || !offset || !nonzero || !tap || !counts)
        goto done;
    /* Row by row, so that the row's lists (w x cin entries) stay in L1 while every channel adds to them. */
    for (int r = 0; r < hp; r++)
        for (int c = 0; c < cin; c++) {
            const int y = y0 - p + r;
            if (y < 0 || y >= h)
                continue;
            const int32_t *row = a + ((size_t)c * h + y) * w;
            for (int x = 0; x < w; x++)
                if (row[x]) {
                    const size_t at = (size_t)r * wp + x + p, i = at * cin + (size_t)listed[at]++;
                    list_value[i] = (int16_t)row[x];
                    list_offset[i] = (int32_t)c * LIC_HS_BLOCK;
                }
        }
    for (int t = 0; t < taps; t++)
        tap[t] = (int32_t)t * cin * LIC_HS_BLOCK;

    /* One block of output channels and one phase at a time over the whole rows: the weights these
     * read (taps x cin x 32 int16, contiguous: 16 KiB for 2x2 taps of 64 channels) stay in a 32 KiB
     * L1 data cache, where visiting every phase and block per pixel (128 KiB) missed it on nearly
     * every weight row. */
    for (int o0 = 0; o0 < cout; o0 += LIC_HS_BLOCK)
        for (int py = 0; py < phases; py++)
            for (int px = 0; px < phases; px++) {
                const int16_t *wph = weight + ((size_t)o0 / LIC_HS_BLOCK * phases * phases + py * phases + px) * phase_size;
                for (int y = y0; y < y1; y++) {
                    for (int x = 0; x < w; x++) {
                        for (int ky = 0; ky < kw; ky++)
                            for (int kx = 0; kx < kw; kx++) {
                                const size_t pixel = (size_t)(y - y0 + py + ky) * wp + x + px + kx;
                                const int t = ky * kw + kx;
                                value[t] = list_value + pixel * cin;
                                offset[t] = list_offset + pixel * cin;
                                nonzero[t] = listed[pixel];
                            }
                        int32_t block[LIC_HS_BLOCK];
                        window_dot(value, offset, nonzero, tap, taps, wph, block);
                        count_passed(block, thr + (size_t)o0 * nthr, nthr, guesses, cout, o0,
                                     counts + (size_t)x * LIC_HS_BLOCK, 1);
                    }
                    /* Then into the output planes one channel at a time: written straight from
                     * count_passed, the 32 channels' stores would land 32 planes apart, planes whose
                     * size (a multiple of 2 KiB here) maps them onto a few cache sets. */
                    for (int j = 0; j < LIC_HS_BLOCK; j++) {
                        int32_t *dst = out + (size_t)(o0 + j) * ho * wo + (size_t)(y * phases + py) * wo + px;
                        const int32_t *src = counts + j;
#pragma GCC unroll 4
                        for (int x = 0; x < w; x++, dst += phases, src += LIC_HS_BLOCK)
                            *dst = *src;
                    }
                }
            }
    status = 0;
done:
    free(listed);
    free(list_value);
    free(list_offset);
    free(value);
    free(offset);
    free(nonzero);
    free(tap);
    free(counts);
    return status;
}
