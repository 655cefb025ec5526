// Stream-register capture for the lock-step monitor (tb/chip/lockstep.py), in C++ so that
// no Python runs per clock cycle.
//
// Loaded with ctypes into the cocotb process (the Verilated executable exports the VPI
// functions).  tapcap_arm() takes the full names of the registers to record and a clock;
// a VPI value-change callback on the clock then copies every register into a buffer
// owned by the caller at each of the next `rows` rising edges (after the time of the
// call: an edge being reported while it is armed is not one of them), and removes
// itself.  The callback runs when the clock has risen but before the simulator
// evaluates the edge (cocotb's Verilator loop), so row j holds the registers as the
// j-th edge before it left them: row 0 what cocotb's ReadOnly showed when it was armed.
#include <cstdint>
#include <cstring>
#include <vector>

#include "vpi_user.h"

namespace {

struct Capture {
    vpiHandle clk = nullptr;
    vpiHandle cb = nullptr;
    std::vector<vpiHandle> regs;
    std::vector<int> words;  // 32-bit words of each register
    int row_words = 0;
    long rows = 0;
    long done = 0;
    uint32_t* out = nullptr;
    // optional schedule: at row j only registers sched_idx[sched_ptr[j] .. sched_ptr[j+1]]
    // are read, packed one after another (all of one width)
    std::vector<long> sched_ptr;
    std::vector<int> sched_idx;
    s_vpi_time time{vpiSuppressTime, 0, 0, 0.0};
    uint64_t armed_at = 0;  // simulation time of tapcap_arm: an edge then is not counted
    s_vpi_value clk_value{vpiIntVal, {0}};
};

Capture cap;

uint64_t now() {
    s_vpi_time t{vpiSimTime, 0, 0, 0.0};
    vpi_get_time(nullptr, &t);
    return (uint64_t(t.high) << 32) | t.low;
}

PLI_INT32 on_clock(p_cb_data data) {
    if (data->value == nullptr || data->value->value.integer != 1 || cap.done >= cap.rows) {
        return 0;
    }
    // armed while the simulator reports this edge (cocotb code woken by it): the edge
    // has already happened, the first one recorded is the next
    if (now() == cap.armed_at) return 0;
    s_vpi_value v;
    if (!cap.sched_ptr.empty()) {
        const int words = cap.words.empty() ? 0 : cap.words[0];
        uint32_t* row = cap.out + cap.sched_ptr[cap.done] * words;
        for (long e = cap.sched_ptr[cap.done]; e < cap.sched_ptr[cap.done + 1]; ++e) {
            v.format = vpiVectorVal;
            vpi_get_value(cap.regs[cap.sched_idx[e]], &v);
            for (int w = 0; w < words; ++w) row[w] = v.value.vector[w].aval;
            row += words;
        }
    } else {
        uint32_t* row = cap.out + cap.done * cap.row_words;
        for (size_t i = 0; i < cap.regs.size(); ++i) {
            v.format = vpiVectorVal;
            vpi_get_value(cap.regs[i], &v);
            for (int w = 0; w < cap.words[i]; ++w) row[w] = v.value.vector[w].aval;
            row += cap.words[i];
        }
    }
    if (++cap.done == cap.rows && cap.cb != nullptr) {
        vpi_remove_cb(cap.cb);
        cap.cb = nullptr;
    }
    return 0;
}

}  // namespace

extern "C" {

// Arm: record `n` registers (full hierarchical names) at each of the next `rows` rising
// edges of `clock` into `out` (rows x sum of the registers' 32-bit words).  Returns 0, or
// -(i + 1) if name i is not found, or -(n + 1) for the clock; the bad name is not kept.
int tapcap_arm(const char* clock, const char* const* names, int n, long rows, uint32_t* out) {
    if (cap.cb != nullptr) {
        vpi_remove_cb(cap.cb);
        cap.cb = nullptr;
    }
    cap.regs.clear();
    cap.words.clear();
    cap.sched_ptr.clear();
    cap.sched_idx.clear();
    cap.row_words = 0;
    for (int i = 0; i < n; ++i) {
        vpiHandle h = vpi_handle_by_name(const_cast<PLI_BYTE8*>(names[i]), nullptr);
        if (h == nullptr) return -(i + 1);
        int bits = vpi_get(vpiSize, h);
        cap.regs.push_back(h);
        cap.words.push_back((bits + 31) / 32);
        cap.row_words += (bits + 31) / 32;
    }
    cap.clk = vpi_handle_by_name(const_cast<PLI_BYTE8*>(clock), nullptr);
    if (cap.clk == nullptr) return -(n + 1);
    cap.rows = rows;
    cap.done = 0;
    cap.armed_at = now();
    cap.out = out;
    s_cb_data cb{};
    cb.reason = cbValueChange;
    cb.cb_rtn = on_clock;
    cb.obj = cap.clk;
    cb.time = &cap.time;
    cb.value = &cap.clk_value;
    cap.cb = vpi_register_cb(&cb);
    return cap.cb == nullptr ? -(n + 2) : 0;
}

// Read only some registers at each row (call after tapcap_arm, before the first edge):
// at row j the registers idx[ptr[j] .. ptr[j + 1] - 1], packed into `out` one after
// another; all registers must be of one width.  Returns 0, or -1 if they are not.
int tapcap_schedule(const long* ptr, const int* idx) {
    for (int w : cap.words) {
        if (w != cap.words[0]) return -1;
    }
    cap.sched_ptr.assign(ptr, ptr + cap.rows + 1);
    cap.sched_idx.assign(idx, idx + cap.sched_ptr.back());
    return 0;
}

// The 32-bit words one row holds (valid after a successful arm).
int tapcap_row_words(void) { return cap.row_words; }

// Rising edges recorded so far.
long tapcap_done(void) { return cap.done; }

}  // extern "C"
