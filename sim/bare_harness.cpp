// The bare harness: the Verilated chip driven from C++ alone (no cocotb, no VPI, no
// Python), for the speed limit that `make bench-rtl` puts beside the cocotb-driven run.
//
// It replays a command file written by sim/bare.py through the chip's host interface,
// with the same cycle protocol as tb/chip/host.py (inputs change after the falling edge,
// the chip samples them at the rising edge):
//
//   L <n>              then n lines of hex payloads: write commands, one per cycle
//   R <hex>            a read command; prints "rsp <hex>" (the response, valid in the
//                      cycle after the one that accepted the read)
//   S <max> <repeat>   START, run to `done` (at most <max> cycles), <repeat> times;
//                      prints "run <edges> <seconds>" per run
//
// and prints "load <commands> <seconds>" per L.  Edges are counted from the rising edge
// that accepted START to the one at which `done` rose, as the cocotb driver counts them.
// The port widths come from bare_ports.h (generated for the config).  Verilator spells a
// double underscore in a port name as ___05F: ``cmd__valid`` is ``cmd___05Fvalid``.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "Vtsp.h"
#include "verilated.h"

#include "bare_ports.h"  // PAYLOAD_WORDS, RSP_WORDS, set_payload(), get_rsp()

static std::vector<uint32_t> parse_hex(const std::string& hex, int words) {
    std::vector<uint32_t> w(words, 0);
    int bit = 0;
    for (int i = static_cast<int>(hex.size()) - 1; i >= 0 && bit < 32 * words; --i, bit += 4) {
        char c = hex[i];
        uint32_t v = (c >= '0' && c <= '9') ? c - '0' : (c | 0x20) - 'a' + 10;
        w[bit / 32] |= v << (bit % 32);
    }
    return w;
}

static std::string to_hex(const std::vector<uint32_t>& w) {
    std::string s;
    char buf[9];
    for (int i = static_cast<int>(w.size()) - 1; i >= 0; --i) {
        std::snprintf(buf, sizeof buf, "%08x", w[i]);
        s += buf;
    }
    return s;
}

struct Harness {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vtsp> top;

    Harness(int argc, char** argv) : ctx(new VerilatedContext) {
        ctx->commandArgs(argc, argv);  // +verilator+rand+reset+2 +verilator+seed+N
        top.reset(new Vtsp{ctx.get()});
        top->clk = 0;
        top->rst = 1;
        top->cmd___05Fvalid = 0;
        top->eval();
        for (int i = 0; i < 2; ++i) cycle();
        top->rst = 0;
    }
    // one clock cycle: the falling edge (inputs set before it are settled), then the
    // rising edge
    inline void cycle() {
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
    }
    void present(const std::vector<uint32_t>& payload) {
        top->clk = 0;
        top->eval();
        if (!top->cmd___05Fready) {
            std::fprintf(stderr, "bare harness: command refused (machine running)\n");
            std::exit(2);
        }
        set_payload(top.get(), payload.data());
        top->cmd___05Fvalid = 1;
        top->eval();
        top->clk = 1;
        top->eval();
    }
    void idle() {
        top->clk = 0;
        top->eval();
        top->cmd___05Fvalid = 0;
        top->eval();
    }
};

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s COMMANDS [+verilator+... plusargs]\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[1]);
    if (!in) {
        std::fprintf(stderr, "bare harness: cannot read %s\n", argv[1]);
        return 2;
    }
    Harness h(argc, argv);
    std::string line;
    using clock = std::chrono::steady_clock;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string op;
        ls >> op;
        if (op == "L") {
            long n = 0;
            ls >> n;
            std::vector<std::vector<uint32_t>> cmds;
            cmds.reserve(n);
            for (long i = 0; i < n && std::getline(in, line); ++i)
                cmds.push_back(parse_hex(line, PAYLOAD_WORDS));
            auto t0 = clock::now();
            for (auto& c : cmds) h.present(c);
            h.idle();
            h.top->clk = 1;
            h.top->eval();
            double s = std::chrono::duration<double>(clock::now() - t0).count();
            std::printf("load %zu %.6f\n", cmds.size(), s);
        } else if (op == "R") {
            std::string hex;
            ls >> hex;
            h.present(parse_hex(hex, PAYLOAD_WORDS));
            h.idle();  // the response is valid in this cycle, the one after the accept
            if (!h.top->rsp_valid) {
                std::fprintf(stderr, "bare harness: no response to a read command\n");
                return 2;
            }
            std::vector<uint32_t> rsp(RSP_WORDS);
            get_rsp(h.top.get(), rsp.data());
            h.top->clk = 1;
            h.top->eval();
            std::printf("rsp %s\n", to_hex(rsp).c_str());
        } else if (op == "S") {
            long max_cycles = 0, repeat = 1;
            ls >> max_cycles >> repeat;
            std::vector<uint32_t> start = parse_hex(START_PAYLOAD, PAYLOAD_WORDS);
            for (long r = 0; r < repeat; ++r) {
                auto t0 = clock::now();
                h.present(start);  // accepted at this rising edge: edge 0
                long edges = 0;
                h.idle();
                h.top->clk = 1;
                h.top->eval();
                edges = 1;
                while (!h.top->done && edges < max_cycles + 1) {
                    h.cycle();
                    ++edges;
                }
                double s = std::chrono::duration<double>(clock::now() - t0).count();
                if (!h.top->done) {
                    std::printf("timeout %ld\n", edges);
                    return 1;
                }
                std::printf("run %ld %.6f\n", edges, s);
            }
        } else if (!op.empty() && op[0] != '#') {
            std::fprintf(stderr, "bare harness: unknown command %s\n", op.c_str());
            return 2;
        }
    }
    std::fflush(stdout);
    h.top->final();
    return 0;
}
