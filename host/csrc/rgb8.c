/* The last ARM stage before display: the fabric's int16 pixels, planar [3][H][W] (any row and plane
 * stride, so a cropped view needs no copy), to interleaved uint8 RGB [H][W][3] through a table of
 * 65536 entries indexed by the int16 bit pattern (host/runtime.py builds it with the float32
 * arithmetic that defines the mapping, so the result is that arithmetic's, bit for bit). */
#include <stddef.h>
#include <stdint.h>

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
