# scale.s: y = saturate_int8(3 * x) for 4 vectors, MEM_W0 -> VXM -> MEM_E0 (config tiny).
#
# Run it on the machine model, and with --rtl on the Verilated chip (compared):
#     python -m sim run examples/scale.s --image examples/scale.json --dump MEM_E0:0:4 --rtl
#
# tiny, west to east: MXM_W0 0, SXM_W 1, MEM_W1 2, MEM_W0 3, VXM 4, MEM_E0 5, MEM_E1 6,
# SXM_E 7, MXM_E0 8.  A value written onto an eastward stream by the slice at position p
# in cycle t can be read by the slice at p + d in cycle t + d; READ (latency 1) writes its
# stream one cycle after issue, VXM (latency 3) three.
.config tiny

.slice MEM_W0
    READ 0, s1.E                     # cycles 0..3: x[0..3] onto s1.E in cycles 1..4
    REPEAT 3, 1, 1                   # 3 more, 1 cycle apart, address +1 each
    HALT

.slice VXM
    NOP 2                            # cycles 0, 1
    VXM.i8 s2.E:sat = MUL(s1.E, 3)  # cycles 2..5 (s1.E from MEM_W0, 1 east)
    REPEAT 3, 1                      # results on s2.E in cycles 5..8
    HALT

.slice MEM_E0
    NOP 6                            # cycles 0..5
    WRITE s2.E, 0                    # cycles 6..9 (s2.E from the VXM, 1 east): y[0..3]
    REPEAT 3, 1, 1
    HALT
