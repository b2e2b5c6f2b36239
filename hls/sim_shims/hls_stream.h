// Stand-in for Vitis HLS's hls_stream.h in C simulation (see README.md): hls::stream<T> is an
// unbounded FIFO. Reading an empty stream is an error in C simulation (a deadlock in hardware):
// abort with the stream's name rather than return garbage.
#ifndef LIC_SIM_SHIM_HLS_STREAM_H
#define LIC_SIM_SHIM_HLS_STREAM_H

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>

namespace hls {

template <typename T>
class stream {
public:
    stream() : name_("hls::stream") {}
    explicit stream(const char *name) : name_(name) {}
    stream(const stream &) = delete;
    stream &operator=(const stream &) = delete;

    bool empty() const { return fifo_.empty(); }
    bool full() const { return false; }
    std::size_t size() const { return fifo_.size(); }

    void write(const T &v) { fifo_.push_back(v); }
    bool write_nb(const T &v) { write(v); return true; }
    void operator<<(const T &v) { write(v); }

    T read() {
        if (fifo_.empty()) {
            std::fprintf(stderr, "hls::stream '%s' read while empty\n", name_.c_str());
            std::abort();
        }
        T v = fifo_.front();
        fifo_.pop_front();
        return v;
    }
    void read(T &v) { v = read(); }
    bool read_nb(T &v) {
        if (fifo_.empty()) return false;
        v = read();
        return true;
    }
    void operator>>(T &v) { v = read(); }

private:
    std::string name_;
    std::deque<T> fifo_;
};

}  // namespace hls

#endif
