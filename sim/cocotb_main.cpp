// The main loop of a Verilated simulator driven by cocotb, with the clock toggled here.
//
// cocotb's own Verilator main leaves the clock to the testbench: its GPI clock is a timer
// callback that writes `clk` through VPI and registers the next one, twice a cycle.  This
// loop toggles the top's `clk` itself every TSP_CLOCK_PERIOD_PS / 2 (high first, as
// cocotb's Clock(start_high=True) from time 0), so a cycle in which no testbench coroutine
// waits costs two evaluations and the VPI phases with nothing registered.  Everything
// else follows the VPI protocol cocotb expects of a simulator: start of simulation,
// value-change callbacks settled after every evaluation and VPI write, read-write and
// read-only synchronisation in each time step, the next time step the earliest of the
// next clock edge, the next timer callback and the model's own next event; end of
// simulation.  The testbench does not start a clock of its own (tb/env.py, told by
// $TSP_NATIVE_CLOCK, which sim/run.py sets for simulators built with this main).
// Built for simulators without tracing or coverage (sim/build.py); those keep cocotb's.

#include <algorithm>
#include <memory>

#include "Vtop.h"
#include "verilated.h"
#include "verilated_vpi.h"

#ifndef TSP_CLOCK_PERIOD_PS
#error "TSP_CLOCK_PERIOD_PS (the testbench's clock period) must be defined"
#endif

static vluint64_t sim_time = 0;  // in the model's time precision

double sc_time_stamp() { return static_cast<double>(sim_time); }

extern "C" void vlog_startup_routines_bootstrap(void);

// value-change callbacks may write signals: call them until none fires
static void settle() {
    while (VerilatedVpi::callValueCbs()) {
    }
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    std::unique_ptr<Vtop> top(new Vtop(""));
    Verilated::fatalOnVpiError(false);  // cocotb probes handles that may not exist

    // half a period in the model's time precision (10^precision s)
    vluint64_t half = TSP_CLOCK_PERIOD_PS / 2;
    for (int e = -12; e > Verilated::threadContextp()->timeprecision(); --e) half *= 10;
    for (int e = -12; e < Verilated::threadContextp()->timeprecision(); ++e) half /= 10;
    if (half == 0) {
        VL_PRINTF("cocotb_main: the clock's half period is below the time precision\n");
        return 1;
    }
    vluint64_t next_edge = half;
    top->clk = 1;

    vlog_startup_routines_bootstrap();
    VerilatedVpi::callCbs(cbStartOfSimulation);
    settle();

    const vluint64_t never = ~vluint64_t(0);
    while (!Verilated::gotFinish()) {
        do {  // this time step until nothing changes any more
            do {
                top->eval_step();
                VerilatedVpi::clearEvalNeeded();
                VerilatedVpi::doInertialPuts();
                settle();
            } while (VerilatedVpi::evalNeeded());
            VerilatedVpi::callCbs(cbReadWriteSynch);
            VerilatedVpi::doInertialPuts();
            settle();
        } while (VerilatedVpi::evalNeeded());
        top->eval_end_step();
        VerilatedVpi::callCbs(cbReadOnlySynch);

        vluint64_t next = std::min(next_edge, VerilatedVpi::cbNextDeadline());
        if (top->eventsPending()) next = std::min(next, top->nextTimeSlot());
        if (next == never) break;
        sim_time = next;
        VerilatedVpi::callCbs(cbNextSimTime);
        settle();
        if (sim_time == next_edge) {  // at the start of the time step, as a timer would
            top->clk = !top->clk;
            next_edge += half;
        }
        VerilatedVpi::callTimedCbs();
        settle();
    }
    top->final();
    VerilatedVpi::callCbs(cbEndOfSimulation);
    return Verilated::threadContextp()->errorCount() > 0 ? 1 : 0;
}
