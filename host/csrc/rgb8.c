/* The last ARM stage before display: the fabric's int16 pixels, planar [3][H][W] (any row and plane
 * stride, so a cropped view needs no copy), to interleaved uint8 RGB [H][W][3].
 *
 * The mapping is defined in float32 (host/runtime.py): x = v * scale, clamp to [0, 1], x 255, round
 * half to even. lic_rgb8 applies it through a table of 65536 entries indexed by the int16 bit
 * pattern, built with that arithmetic, so it is that arithmetic's result bit for bit, for any scale.
 *
 * lic_rgb8_pow2 is the same mapping for scale = 2^-k, 0 <= k <= 7 (the student's power-of-two output
 * scale: 2^-7 for int8 outputs), in integers: u = clamp(v, 0, 2^k), out = (255 u + 2^(k-1)) >> k.
 * Why that is exact: v * 2^-k and its clamp are exact in float32, and so is 255 u 2^-k (< 2^24), so
 * the float32 result is 255 u / 2^k rounded half to even. Adding half and shifting rounds half up,
 * which differs only at a tie, 255 u = 2^(k-1) (mod 2^k); 255 is odd, so a tie means
 * u = 2^(k-1) (mod 2^k), i.e. u = 2^(k-1) in [0, 2^k], where 255 u / 2^k = 127.5 rounds to 128
 * either way. 255 u <= 255 * 2^7 fits int16, so NEON does eight values per instruction with no
 * table: about 2.5 instructions per pixel against about 12 for the table's loads. */
#include <stddef.h>
#include <stdint.h>
#ifdef __ARM_NEON
#include <arm_neon.h>
#endif

void lic_rgb8(const int16_t *pixels, int h, int w, ptrdiff_t plane_stride, ptrdiff_t row_stride,
              const uint8_t *table, uint8_t *out)
{
    for (int y = 0; y < h; y++) {
        const uint16_t *r = (const uint16_t *)(pixels + y * row_stride);
        const uint16_t *g = (const uint16_t *)(pixels + plane_stride + y * row_stride);
        const uint16_t *b = (const uint16_t *)(pixels + 2 * plane_stride + y * row_stride);
        uint8_t *o = out + (size_t)y * w * 3;
        for (int x = 0; x < w; x++) {
            o[3 * x] = table[r[x]];
            o[3 * x + 1] = table[g[x]];
            o[3 * x + 2] = table[b[x]];
        }
    }
}

static inline uint8_t pow2_rgb8(int v, int k)
{
    int u = v < 0 ? 0 : v > (1 << k) ? (1 << k) : v;
    return (uint8_t)((255 * u + ((1 << k) >> 1)) >> k);
}

#ifdef __ARM_NEON
static inline uint8x8_t pow2_rgb8_neon(int16x8_t v, int16x8_t top, int16x8_t minus_k)
{
    v = vminq_s16(vmaxq_s16(v, vdupq_n_s16(0)), top);
    return vqmovun_s16(vrshlq_s16(vmulq_n_s16(v, 255), minus_k));  /* vrshl by -k: + 2^(k-1), >> k */
}
#endif

/* Returns -1 (nothing written) unless 0 <= k <= 7. */
int lic_rgb8_pow2(const int16_t *pixels, int h, int w, ptrdiff_t plane_stride, ptrdiff_t row_stride, int k,
                  uint8_t *out)
{
    if (k < 0 || k > 7)
        return -1;
#ifdef __ARM_NEON
    const int16x8_t top = vdupq_n_s16((int16_t)(1 << k)), minus_k = vdupq_n_s16((int16_t)-k);
#endif
    for (int y = 0; y < h; y++) {
        const int16_t *r = pixels + y * row_stride;
        const int16_t *g = r + plane_stride, *b = r + 2 * plane_stride;
        uint8_t *o = out + (size_t)y * w * 3;
        int x = 0;
#ifdef __ARM_NEON
        for (; x + 8 <= w; x += 8) {
            uint8x8x3_t rgb;
            rgb.val[0] = pow2_rgb8_neon(vld1q_s16(r + x), top, minus_k);
            rgb.val[1] = pow2_rgb8_neon(vld1q_s16(g + x), top, minus_k);
            rgb.val[2] = pow2_rgb8_neon(vld1q_s16(b + x), top, minus_k);
            vst3_u8(o + 3 * x, rgb);
        }
#endif
        for (; x < w; x++) {
            o[3 * x] = pow2_rgb8(r[x], k);
            o[3 * x + 1] = pow2_rgb8(g[x], k);
            o[3 * x + 2] = pow2_rgb8(b[x], k);
        }
    }
    return 0;
}

/* The same mapping from the accelerator's own output stream: int8 values, interleaved [rows][cols][3]
 * as FINN's output DMA writes a tile (byte-aligned INT8 packs as the plain values), any row stride,
 * so each tile's core goes straight into its place in the frame: no planar int16 frame in between.
 * `n` is values per row (3 x pixels); row strides in bytes. Returns -1 (nothing written) unless
 * 0 <= k <= 7. NEON: u = clamp(v, 0, 2^k) fits a byte, 255 u fits 16 bits unsigned, and the
 * rounding shift narrows back: 16 values in 8 instructions besides the load and store. */
int lic_rgb8_pow2_hwc8(const int8_t *src, int rows, int n, ptrdiff_t src_row_stride, int k, uint8_t *out,
                       ptrdiff_t out_row_stride)
{
    if (k < 0 || k > 7)
        return -1;
#ifdef __ARM_NEON
    const uint8x16_t top = vdupq_n_u8((uint8_t)(1 << k));
    const uint8x8_t c255 = vdup_n_u8(255);
    const int16x8_t minus_k = vdupq_n_s16((int16_t)-k);
#endif
    for (int y = 0; y < rows; y++) {
        const int8_t *s = src + y * src_row_stride;
        uint8_t *o = out + y * out_row_stride;
        int x = 0;
#ifdef __ARM_NEON
        for (; x + 16 <= n; x += 16) {
            uint8x16_t u = vminq_u8(vreinterpretq_u8_s8(vmaxq_s8(vld1q_s8(s + x), vdupq_n_s8(0))), top);
            uint16x8_t lo = vrshlq_u16(vmull_u8(vget_low_u8(u), c255), minus_k);   /* + 2^(k-1), >> k */
            uint16x8_t hi = vrshlq_u16(vmull_u8(vget_high_u8(u), c255), minus_k);
            vst1q_u8(o + x, vcombine_u8(vmovn_u16(lo), vmovn_u16(hi)));
        }
#endif
        for (; x < n; x++)
            o[x] = pow2_rgb8(s[x], k);
    }
    return 0;
}
