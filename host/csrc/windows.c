/* The fabric's input: one window of y_hat, int32 planar [m][rows][cols] as the rANS decoder writes
 * the frame (any plane and row stride, so the window needs no copy first), to the accelerator's
 * input stream, int8 [rows][cols][m] clipped to [lo, hi]: the student's input quantiser, which the
 * FINN build removes (hls/transforms.py), and FINN's packing of a byte-aligned INT8 stream, which is
 * the plain values in this order. On a board `out` is the input DMA buffer itself.
 *
 * Why blocks of 8 channels x 8 columns: the planes are a frame's plane apart (6 KiB for 768x512),
 * so reading one pixel's m channels touches m lines that share a handful of L1 sets. A block reads
 * 8 planes' consecutive columns (each line once, in order), narrows with saturation (the clip, for
 * [-128, 127]) and transposes 8x8 bytes in registers; one output row (cols x m bytes) stays in L1
 * while the planes stream through. */
#include <stddef.h>
#include <stdint.h>
#ifdef __ARM_NEON
#include <arm_neon.h>
#endif

static inline int8_t clip8(int32_t v, int lo, int hi)
{
    return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}

#ifdef __ARM_NEON
static inline int8x8_t narrow8(const int32_t *p)
{
    int16x8_t h = vcombine_s16(vqmovn_s32(vld1q_s32(p)), vqmovn_s32(vld1q_s32(p + 4)));
    return vqmovn_s16(h);
}

/* 8 channels (planes `plane` apart) x 8 columns from y -> 8 pixels of 8 channels, `m` bytes apart. */
static inline void block8x8(const int32_t *y, ptrdiff_t plane, int8_t *o, int m)
{
    int8x8x2_t t01 = vtrn_s8(narrow8(y), narrow8(y + plane));
    int8x8x2_t t23 = vtrn_s8(narrow8(y + 2 * plane), narrow8(y + 3 * plane));
    int8x8x2_t t45 = vtrn_s8(narrow8(y + 4 * plane), narrow8(y + 5 * plane));
    int8x8x2_t t67 = vtrn_s8(narrow8(y + 6 * plane), narrow8(y + 7 * plane));
    int16x4x2_t u02 = vtrn_s16(vreinterpret_s16_s8(t01.val[0]), vreinterpret_s16_s8(t23.val[0]));
    int16x4x2_t u13 = vtrn_s16(vreinterpret_s16_s8(t01.val[1]), vreinterpret_s16_s8(t23.val[1]));
    int16x4x2_t u46 = vtrn_s16(vreinterpret_s16_s8(t45.val[0]), vreinterpret_s16_s8(t67.val[0]));
    int16x4x2_t u57 = vtrn_s16(vreinterpret_s16_s8(t45.val[1]), vreinterpret_s16_s8(t67.val[1]));
    int32x2x2_t c04 = vtrn_s32(vreinterpret_s32_s16(u02.val[0]), vreinterpret_s32_s16(u46.val[0]));
    int32x2x2_t c26 = vtrn_s32(vreinterpret_s32_s16(u02.val[1]), vreinterpret_s32_s16(u46.val[1]));
    int32x2x2_t c15 = vtrn_s32(vreinterpret_s32_s16(u13.val[0]), vreinterpret_s32_s16(u57.val[0]));
    int32x2x2_t c37 = vtrn_s32(vreinterpret_s32_s16(u13.val[1]), vreinterpret_s32_s16(u57.val[1]));
    vst1_s8(o, vreinterpret_s8_s32(c04.val[0]));
    vst1_s8(o + m, vreinterpret_s8_s32(c15.val[0]));
    vst1_s8(o + 2 * m, vreinterpret_s8_s32(c26.val[0]));
    vst1_s8(o + 3 * m, vreinterpret_s8_s32(c37.val[0]));
    vst1_s8(o + 4 * m, vreinterpret_s8_s32(c04.val[1]));
    vst1_s8(o + 5 * m, vreinterpret_s8_s32(c15.val[1]));
    vst1_s8(o + 6 * m, vreinterpret_s8_s32(c26.val[1]));
    vst1_s8(o + 7 * m, vreinterpret_s8_s32(c37.val[1]));
}
#endif

void lic_window_hwc8(const int32_t *y, int m, ptrdiff_t plane_stride, ptrdiff_t row_stride, int rows, int cols,
                     int lo, int hi, int8_t *out)
{
    for (int r = 0; r < rows; r++) {
        const int32_t *yr = y + r * row_stride;
        int8_t *o = out + (size_t)r * cols * m;
        int done = 0;  /* columns written by the NEON blocks */
#ifdef __ARM_NEON
        if (lo == -128 && hi == 127 && m % 8 == 0) {
            done = cols - cols % 8;
            for (int c = 0; c < m; c += 8)
                for (int x = 0; x < done; x += 8)
                    block8x8(yr + c * plane_stride + x, plane_stride, o + (size_t)x * m + c, m);
        }
#endif
        for (int c = 0; c < m; c++) {
            const int32_t *p = yr + c * plane_stride;
            for (int x = done; x < cols; x++)
                o[(size_t)x * m + c] = clip8(p[x], lo, hi);
        }
    }
}
