// A type named `half`, for FINN's cnpy.h, which lists it in map_type's float test (see README.md).
// Vitis HLS defines it in hls_half.h; the open-source ap types do not (_AP_ENABLE_HALF_ is 0).
// cppsim never stores half values: only the type's name and distinctness matter.
#ifndef LIC_SIM_SHIM_CNPY_HALF_H
#define LIC_SIM_SHIM_CNPY_HALF_H
#ifndef _HLS_HALF_DEFINED_
#include <cstdint>
struct half {
    std::uint16_t bits;
};
#endif
#endif
