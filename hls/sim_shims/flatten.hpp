// Stand-in for the packing helpers of finn-hlslib after cc8db47 that FINN's npy2apintstream.hpp
// includes (see README.md): width_v<T> is T's width in bits; flatten packs an array of N elements
// into one ap_uint<N * width_v<T>>, element i in bits [i*W, (i+1)*W); unflatten is its inverse.
// FINN's Python packing (finn.util.data_packing) uses the same order, so the npy files FINN writes
// for cppsim are read back element for element.
#ifndef LIC_SIM_SHIM_FLATTEN_HPP
#define LIC_SIM_SHIM_FLATTEN_HPP

#include <ap_int.h>
#include <cstddef>

template <typename T>
struct width_of;
template <int W>
struct width_of<ap_int<W>> { static constexpr std::size_t value = W; };
template <int W>
struct width_of<ap_uint<W>> { static constexpr std::size_t value = W; };

template <typename T>
constexpr std::size_t width_v = width_of<T>::value;

template <typename T, std::size_t N>
ap_uint<N * width_v<T>> flatten(T const (&elems)[N]) {
    constexpr int W = width_v<T>;
    ap_uint<N * W> packed = 0;
    for (std::size_t i = 0; i < N; i++) {
        packed(i * W + W - 1, i * W) = ap_uint<W>(elems[i](W - 1, 0));
    }
    return packed;
}

template <typename T, std::size_t N, typename Packed>
void unflatten(T (&elems)[N], Packed const &packed) {
    constexpr int W = width_v<T>;
    static_assert(N * W <= Packed::width, "unflatten: packed word narrower than the elements");
    for (std::size_t i = 0; i < N; i++) {
        T e;
        e(W - 1, 0) = packed(i * W + W - 1, i * W);
        elems[i] = e;
    }
}

#endif
