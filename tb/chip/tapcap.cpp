// Stream-register capture for the lock-step monitor (tb/chip/lockstep.py): no Python and
// no VPI per clock cycle.
//
// Compiled into every Verilated chip (sim/build.py).  Each superlane's stream fabric
// (`SuperlaneStreams`, hooks added to the simulated Verilog by tb/chip/tapcap.py) calls,
// at every rising clock edge,
//
//     if (tapcap_on()) { tapcap_bank(d, p, taps__<p>__<d>_in); ... }
//
// with the register values the edge is about to replace (an `always @(posedge clk)`
// reads the state the previous edge left).  tapcap_on() is one call per superlane and
// edge and returns 0 unless the testbench armed a capture (tapcap_arm, through ctypes:
// the executable exports the tapcap_* symbols), so a run without lock-step pays almost
// nothing and no stream register needs to be visible through VPI.
//
// Once armed, superlane k's n-th edge from then is its row n (n = 0 .. rows - 1): row n
// holds the registers as the edge before it left them.  `slot[n * banks + b]` says where
// bank b (= (k * 2 + d) * positions + p) of row n goes in `out` (in units of one bank's
// words), or -1 for a bank that is not wanted.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "svdpi.h"

namespace {

struct Capture {
    bool armed = false;
    long rows = 0;
    int positions = 0;
    int superlanes = 0;
    int words = 0;  // 32-bit words of one bank
    const int32_t* slot = nullptr;
    uint32_t* out = nullptr;
    std::vector<long> edges;  // per superlane: edges seen since arming
    std::vector<std::pair<svScope, int>> scopes;  // DPI scope -> superlane
    // where the calling superlane's banks of this edge go: set by tapcap_on, which the
    // same always block calls right before its tapcap_bank calls (so those need no
    // scope: a plain DPI call)
    const int32_t* row_slot = nullptr;
};

Capture cap;

int superlane_of(svScope scope) {
    for (const auto& s : cap.scopes) {
        if (s.first == scope) return s.second;
    }
    // the instance is ...fabric.superlane<k>
    const char* name = svGetNameFromScope(scope);
    const char* at = name ? std::strstr(name, "superlane") : nullptr;
    const int k = at ? std::atoi(at + 9) : -1;
    cap.scopes.emplace_back(scope, k);
    return k;
}

}  // namespace

extern "C" {

// DPI, from each superlane at each rising edge: 1 if its banks are to be recorded now.
int tapcap_on() {
    if (!cap.armed) return 0;
    const int k = superlane_of(svGetScope());
    if (k < 0 || k >= cap.superlanes) return 0;
    const long row = cap.edges[k]++;
    if (row >= cap.rows) return 0;
    cap.row_slot = cap.slot + (row * cap.superlanes * 2 + k * 2) * cap.positions;
    return 1;
}

// DPI, right after tapcap_on returned 1: bank (d, p) of that superlane, `v` its value
// (cap.words words).
void tapcap_bank(int d, int p, const svBitVecVal* v) {
    const int32_t s = cap.row_slot[d * cap.positions + p];
    if (s >= 0) std::memcpy(cap.out + long(s) * cap.words, v, cap.words * sizeof(uint32_t));
}

// Arm from the testbench: record `rows` edges of `superlanes` superlanes, banks of `words`
// 32-bit words at `positions` positions, as `slot` says, into `out`.
void tapcap_arm(long rows, int superlanes, int positions, int words, const int32_t* slot,
                uint32_t* out) {
    cap.rows = rows;
    cap.superlanes = superlanes;
    cap.positions = positions;
    cap.words = words;
    cap.slot = slot;
    cap.out = out;
    cap.edges.assign(superlanes, 0);
    cap.armed = true;
}

// Edges recorded so far (the fewest of any superlane); disarms once all rows are in.
long tapcap_done() {
    if (cap.edges.empty()) return 0;
    long n = cap.edges[0];
    for (long e : cap.edges) n = e < n ? e : n;
    if (n >= cap.rows) cap.armed = false;
    return n < cap.rows ? n : cap.rows;
}

}  // extern "C"
