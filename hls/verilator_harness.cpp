// AXI-stream harness for one FINN RTL layer verilated as class Vlayer (verilator --prefix Vlayer).
// Every FINN layer wrapper (and our MVAU + weight streamer top) has the same stream ports:
// ap_clk, ap_rst_n, in0_V_{TDATA,TVALID,TREADY}, out0_V_{TDATA,TVALID,TREADY}. Other inputs
// (AXI-lite, set selection) stay 0, as FINN's stitched design leaves them when nothing drives them.
//
//   harness IN_FILE IN_BYTES OUT_FILE OUT_BYTES OUT_BEATS
//
// IN_FILE holds the input beats back to back, IN_BYTES each, little endian (FINN's packing,
// finn.util.data_packing, bytes reversed); OUT_FILE receives OUT_BEATS beats the same way. The
// input is offered on every cycle and the output always accepted, so the cycle counts are the
// layer's own, as FINN estimates them. Prints one JSON line: cycles from the first input beat
// accepted to the last output beat, and from the end of reset to the last output beat.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "Vlayer.h"
#include "verilated.h"

namespace {

template <typename T>
void set_bits(T &port, const std::uint8_t *bytes, std::size_t n) {
    if constexpr (std::is_integral_v<T>) {
        T v = 0;
        std::memcpy(&v, bytes, n);
        port = v;
    } else {  // VlWide: 32-bit words, least significant first
        std::memset(port.data(), 0, sizeof(port));
        std::memcpy(port.data(), bytes, n);
    }
}

template <typename T>
void get_bits(const T &port, std::uint8_t *bytes, std::size_t n) {
    if constexpr (std::is_integral_v<T>) {
        std::memcpy(bytes, &port, n);
    } else {
        std::memcpy(bytes, port.data(), n);
    }
}

[[noreturn]] void fail(const char *what) {
    std::fprintf(stderr, "harness: %s\n", what);
    std::exit(2);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 6) fail("usage: harness IN_FILE IN_BYTES OUT_FILE OUT_BYTES OUT_BEATS");
    const std::size_t in_bytes = std::strtoull(argv[2], nullptr, 10);
    const std::size_t out_bytes = std::strtoull(argv[4], nullptr, 10);
    const std::size_t out_beats = std::strtoull(argv[5], nullptr, 10);
    if (in_bytes > sizeof(Vlayer::in0_V_TDATA) || out_bytes > sizeof(Vlayer::out0_V_TDATA))
        fail("beat wider than the layer's stream");

    std::vector<std::uint8_t> in;
    {
        FILE *f = std::fopen(argv[1], "rb");
        if (!f) fail("cannot open the input file");
        std::uint8_t buf[1 << 16];
        for (std::size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) in.insert(in.end(), buf, buf + n);
        std::fclose(f);
    }
    if (in.size() % in_bytes) fail("input file is not a whole number of beats");
    const std::size_t in_beats = in.size() / in_bytes;
    std::vector<std::uint8_t> out(out_beats * out_bytes);

    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    auto top = std::make_unique<Vlayer>(ctx.get());
    top->ap_clk = 0;
    top->ap_rst_n = 0;
    top->in0_V_TVALID = 0;
    top->out0_V_TREADY = 0;
    // finn-rtllib's memories and pipelines want a few clocks of reset (FINN's rtlsim gives 16)
    for (int i = 0; i < 16; i++) {
        top->ap_clk = 0;
        top->eval();
        top->ap_clk = 1;
        top->eval();
    }
    top->ap_rst_n = 1;

    // A layer that takes neither input nor gives output for this long has stalled: a tile's
    // longest quiet stretch is a sliding window filling its line buffer, far fewer cycles.
    const std::uint64_t stall_limit = 1000000;
    std::uint64_t cycle = 0, first_in = 0, last_out = 0, last_progress = 0;
    std::size_t n_in = 0, n_out = 0;
    top->out0_V_TREADY = 1;
    while (n_out < out_beats) {
        if (n_in < in_beats) {
            set_bits(top->in0_V_TDATA, &in[n_in * in_bytes], in_bytes);
            top->in0_V_TVALID = 1;
        } else {
            top->in0_V_TVALID = 0;
        }
        top->ap_clk = 0;
        top->eval();
        const bool in_fire = top->in0_V_TVALID && top->in0_V_TREADY;
        const bool out_fire = top->out0_V_TVALID && top->out0_V_TREADY;
        if (out_fire) get_bits(top->out0_V_TDATA, &out[n_out * out_bytes], out_bytes);
        top->ap_clk = 1;
        top->eval();
        if (in_fire) {
            if (n_in == 0) first_in = cycle;
            n_in++;
        }
        if (out_fire) {
            n_out++;
            last_out = cycle;
        }
        if (in_fire || out_fire) last_progress = cycle;
        if (cycle - last_progress > stall_limit) {
            std::printf("{\"stalled\": true, \"in_beats\": %zu, \"out_beats\": %zu, \"cycle\": %llu}\n", n_in,
                        n_out, (unsigned long long)cycle);
            return 3;
        }
        cycle++;
    }
    top->final();

    FILE *f = std::fopen(argv[3], "wb");
    if (!f || std::fwrite(out.data(), 1, out.size(), f) != out.size()) fail("cannot write the output file");
    std::fclose(f);
    std::printf("{\"in_beats\": %zu, \"in_beats_taken\": %zu, \"out_beats\": %zu, \"cycles_first_in_to_last_out\": %llu, "
                "\"cycles_total\": %llu}\n",
                in_beats, n_in, n_out, (unsigned long long)(last_out - first_in + 1),
                (unsigned long long)(last_out + 1));
    return 0;
}
