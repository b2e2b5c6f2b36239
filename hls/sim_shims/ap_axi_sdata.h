// Stand-in for Vitis HLS's ap_axi_sdata.h in C simulation (see README.md): one AXI4-Stream beat
// with its side channels, signed (ap_axis) or unsigned (ap_axiu) data of D bits, U user bits,
// TI id bits, TD dest bits; qdma_axis, the QDMA beat (data, keep, last) behind accessors.
#ifndef LIC_SIM_SHIM_AP_AXI_SDATA_H
#define LIC_SIM_SHIM_AP_AXI_SDATA_H

#include <ap_int.h>

template <int D, int U, int TI, int TD>
struct ap_axis {
    ap_int<D> data;
    ap_uint<(D + 7) / 8> keep;
    ap_uint<(D + 7) / 8> strb;
    ap_uint<U> user;
    ap_uint<1> last;
    ap_uint<TI> id;
    ap_uint<TD> dest;
};

template <int D, int U, int TI, int TD>
struct ap_axiu {
    ap_uint<D> data;
    ap_uint<(D + 7) / 8> keep;
    ap_uint<(D + 7) / 8> strb;
    ap_uint<U> user;
    ap_uint<1> last;
    ap_uint<TI> id;
    ap_uint<TD> dest;
};

template <int D, int U, int TI, int TD>
class qdma_axis {
public:
    ap_uint<D> get_data() const { return data_; }
    ap_uint<(D + 7) / 8> get_keep() const { return keep_; }
    ap_uint<1> get_last() const { return last_; }
    void set_data(const ap_uint<D> &d) { data_ = d; }
    void set_keep(const ap_uint<(D + 7) / 8> &k) { keep_ = k; }
    void set_last(const ap_uint<1> &l) { last_ = l; }

private:
    ap_uint<D> data_;
    ap_uint<(D + 7) / 8> keep_;
    ap_uint<1> last_;
};

#endif
