// Stand-in for Vitis HLS's hls_vector.h in C simulation (see README.md): hls::vector<T, N> is a
// value holding N elements, indexed with [].
#ifndef LIC_SIM_SHIM_HLS_VECTOR_H
#define LIC_SIM_SHIM_HLS_VECTOR_H

#include <array>
#include <cstddef>

namespace hls {

template <typename T, std::size_t N>
class vector {
public:
    vector() = default;
    explicit vector(const T &fill) { elems_.fill(fill); }

    T &operator[](std::size_t i) { return elems_[i]; }
    const T &operator[](std::size_t i) const { return elems_[i]; }
    static constexpr std::size_t size() { return N; }

private:
    std::array<T, N> elems_{};
};

}  // namespace hls

#endif
