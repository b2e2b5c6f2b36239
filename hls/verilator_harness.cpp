// AXI-stream harness for one FINN RTL layer verilated as class Vlayer (verilator --prefix Vlayer).
// Every FINN layer wrapper (and our MVAU + weight streamer top) has the same stream ports:
// ap_clk, ap_rst_n, in0_V_{TDATA,TVALID,TREADY}, out0_V_{TDATA,TVALID,TREADY}. Other inputs
// (AXI-lite, set selection) stay 0, as FINN's stitched design leaves them when nothing drives them.
//
//   harness IN_FILE IN_BYTES OUT_FILE OUT_BYTES OUT_BEATS [WRITES_FILE FLUSH_BEATS]
//
// Compiled with -DLIC_AXILITE (a layer whose weights or thresholds are runtime-writable, its
// s_axilite_* slave a port of the top): WRITES_FILE holds (byte address, 32-bit word) pairs, both
// little-endian uint32, which are written through the AXI-lite slave after reset, one at a time
// and in order, each address and data offered together and the write response awaited (what the
// board's MMIO writes do); then, with FLUSH_BEATS > 0, one batch of zeros (IN_FILE's number of
// beats) of which FLUSH_BEATS output beats are discarded, as the board driver runs one batch after
// loading weights, before the real input.
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

// One clock cycle: inputs set before, outputs sampled between the edges (as the stream loop does).
template <typename V>
void tick(V *top) {
    top->ap_clk = 0;
    top->eval();
    top->ap_clk = 1;
    top->eval();
}

#ifdef LIC_AXILITE
// The (address, word) pairs through the AXI-lite slave; returns the cycles taken, or exits 3 when
// a write is not accepted or answered within `limit` cycles.
template <typename V>
std::uint64_t axilite_writes(V *top, const std::vector<std::uint32_t> &pairs) {
    const std::uint64_t limit = 1000;
    std::uint64_t cycles = 0;
    top->s_axilite_WSTRB = 0xF;
    for (std::size_t i = 0; i + 1 < pairs.size(); i += 2) {
        top->s_axilite_AWADDR = pairs[i];
        top->s_axilite_WDATA = pairs[i + 1];
        top->s_axilite_AWVALID = 1;
        top->s_axilite_WVALID = 1;
        top->s_axilite_BREADY = 1;
        bool aw = false, w = false, b = false;
        unsigned resp = 0;
        for (std::uint64_t n = 0; !b; n++, cycles++) {
            if (n > limit) {
                std::printf("{\"stalled\": true, \"axilite_write\": %zu, \"address\": %u}\n", i / 2, pairs[i]);
                std::exit(3);
            }
            top->ap_clk = 0;
            top->eval();
            const bool aw_fire = top->s_axilite_AWVALID && top->s_axilite_AWREADY;
            const bool w_fire = top->s_axilite_WVALID && top->s_axilite_WREADY;
            const bool b_fire = top->s_axilite_BVALID && top->s_axilite_BREADY;
            top->ap_clk = 1;
            top->eval();
            if (aw_fire) aw = true, top->s_axilite_AWVALID = 0;
            if (w_fire) w = true, top->s_axilite_WVALID = 0;
            if (b_fire && !(aw && w)) fail("AXI-lite write response before its address and data were taken");
            if (b_fire) b = true, resp = top->s_axilite_BRESP;
        }
        top->s_axilite_BREADY = 0;
        if (resp != 0) {
            std::printf("{\"axilite_error\": true, \"axilite_write\": %zu, \"address\": %u, \"bresp\": %u}\n", i / 2,
                        pairs[i], resp);
            std::exit(4);
        }
    }
    return cycles;
}
#endif

int main(int argc, char **argv) {
    if (argc != 6 && argc != 8) fail("usage: harness IN_FILE IN_BYTES OUT_FILE OUT_BYTES OUT_BEATS [WRITES_FILE FLUSH_BEATS]");
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
    if (in_bytes == 0 || in.size() % in_bytes) fail("input file is not a whole number of beats");
    const std::size_t in_beats = in.size() / in_bytes;
    std::vector<std::uint8_t> out(out_beats * out_bytes);
    const std::vector<std::uint8_t> zeros(in_bytes, 0);

    std::vector<std::uint32_t> writes;
    std::size_t flush_beats = 0;
    if (argc == 8) {
#ifndef LIC_AXILITE
        fail("this model has no AXI-lite slave (compiled without LIC_AXILITE)");
#endif
        FILE *f = std::fopen(argv[6], "rb");
        if (!f) fail("cannot open the AXI-lite writes file");
        std::uint32_t buf[1 << 14];
        for (std::size_t n; (n = std::fread(buf, 4, 1 << 14, f)) > 0;) writes.insert(writes.end(), buf, buf + n);
        std::fclose(f);
        if (writes.size() % 2) fail("the AXI-lite writes file is not (address, word) pairs");
        flush_beats = std::strtoull(argv[7], nullptr, 10);
    }

    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(1, argv);
    auto top = std::make_unique<Vlayer>(ctx.get());
    top->ap_clk = 0;
    top->ap_rst_n = 0;
    top->in0_V_TVALID = 0;
    top->out0_V_TREADY = 0;
    // finn-rtllib's memories and pipelines want a few clocks of reset (FINN's rtlsim gives 16)
    for (int i = 0; i < 16; i++) tick(top.get());
    top->ap_rst_n = 1;

    std::uint64_t cycle = 0;
    std::uint64_t write_cycles = 0, flush_cycles = 0;
#ifdef LIC_AXILITE
    write_cycles = axilite_writes(top.get(), writes);
    cycle += write_cycles;
#endif

    // A layer that takes neither input nor gives output for this long has stalled: a tile's
    // longest quiet stretch is a sliding window filling its line buffer, far fewer cycles.
    const std::uint64_t stall_limit = 1000000;
    top->out0_V_TREADY = 1;
    // One batch: data's beats offered on every cycle, out_beats taken into out (or dropped).
    auto batch = [&](const std::uint8_t *data, std::uint8_t *out_data, std::size_t beats, std::uint64_t &first_in,
                     std::uint64_t &last_out, std::size_t &n_in, std::size_t &n_out) {
        std::uint64_t last_progress = cycle;
        n_in = n_out = 0;
        first_in = last_out = cycle;
        while (n_out < beats) {
            if (n_in < in_beats) {
                set_bits(top->in0_V_TDATA, data ? &data[n_in * in_bytes] : zeros.data(), in_bytes);
                top->in0_V_TVALID = 1;
            } else {
                top->in0_V_TVALID = 0;
            }
            top->ap_clk = 0;
            top->eval();
            const bool in_fire = top->in0_V_TVALID && top->in0_V_TREADY;
            const bool out_fire = top->out0_V_TVALID && top->out0_V_TREADY;
            if (out_fire && out_data) get_bits(top->out0_V_TDATA, &out_data[n_out * out_bytes], out_bytes);
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
                std::printf("{\"stalled\": true, \"flush\": %s, \"in_beats\": %zu, \"out_beats\": %zu, \"cycle\": %llu}\n",
                            data ? "false" : "true", n_in, n_out, (unsigned long long)cycle);
                std::exit(3);
            }
            cycle++;
        }
        top->in0_V_TVALID = 0;
    };
    std::uint64_t first_in = 0, last_out = 0;
    std::size_t n_in = 0, n_out = 0;
    if (flush_beats) {
        const std::uint64_t start = cycle;
        batch(nullptr, nullptr, flush_beats, first_in, last_out, n_in, n_out);
        flush_cycles = cycle - start;
    }
    const std::uint64_t start = cycle;
    batch(in.data(), out.data(), out_beats, first_in, last_out, n_in, n_out);
    top->final();

    FILE *f = std::fopen(argv[3], "wb");
    if (!f || std::fwrite(out.data(), 1, out.size(), f) != out.size()) fail("cannot write the output file");
    std::fclose(f);
    std::printf("{\"in_beats\": %zu, \"in_beats_taken\": %zu, \"out_beats\": %zu, \"cycles_first_in_to_last_out\": %llu, "
                "\"cycles_total\": %llu, \"axilite_writes\": %zu, \"axilite_cycles\": %llu, \"flush_cycles\": %llu}\n",
                in_beats, n_in, n_out, (unsigned long long)(in_beats ? last_out - first_in + 1 : last_out - start + 1),
                (unsigned long long)(last_out - start + 1), writes.size() / 2, (unsigned long long)write_cycles,
                (unsigned long long)flush_cycles);
    return 0;
}
