"""Every default, threshold and size limit of precdoctor, each in one place, with why it is what it is."""
from __future__ import annotations

import math

# --- protobuf and model size
PROTOBUF_LIMIT = 2_000_000_000  # protobuf refuses to serialize one message past 2 GB
INLINE_LIMIT = 1_900_000_000  # past this many bytes of inline weights a model goes through external data (room for the graph)
WEIGHT_STORE_MIN_BYTES = 4096  # initializers this large move to the shared external-data store
WEIGHT_STORE_ALIGN = 4096  # page-aligned offsets let ONNX Runtime map the weights instead of copying them

# --- ONNX Runtime sessions
MAX_SHAPE_SESSIONS = 3  # concrete-shape sessions per model before one symbolic-shape session serves the rest
# samples of one shape run as one batch along a free batch axis (backends/emulation.py): on a GPU one pass of 8
# clips costs about one of 1; past 8 the activations grow with no gain left (each batch is one more session shape)
BATCH_SAMPLES = 8
PROBE_GROUP = 64  # probe vectors per graph output: one output for all of them makes session start-up quadratic
FETCH_ELEMENTS = 65_536  # tensors up to this size are fetched and measured in numpy: cheaper than in-graph probes,
#                          whose nodes cost ONNX Runtime start-up time each (a 900-node CRNN: 35,000 probe nodes)
FETCH_BUDGET_BYTES = 256 * 2**20  # fetched values one pass may hold
MEMORY_BUDGET_GB = 8.0  # activations (reference + candidate) one probe pass may compute

# --- control flow
FLAT_NODE_LIMIT = 20_000  # nodes of a flat analysis graph (If inlined, Loop/Scan unrolled); ONNX Runtime's session start-up
#                           grows with node count, and a body unrolled past this is analysed at its boundary only

# --- comparison
DEFAULT_REL_L2 = 0.05  # an output diverges past this relative L2 error (compare's verdict)
DEFAULT_ATOL = 1.0  # a position of an output is off past this max abs error (silent corruption)
GROWTH = 8.0  # a node diverges when its error grows this much over its inputs ...
FLOOR_ULPS = 16  # ... and exceeds this many unit roundoffs of the format ...
MIN_DIVERGENCE = 0.05  # ... and this relative error (below it, rounding noise of near-zero tensors)
UNDERFLOW_SHARE = 0.01  # share of a tensor's nonzero values flushing to 0 that makes it a suspect
SENSITIVE_HOPS = 4  # ops a flushed value may pass (sums, clamps, reshapes) on its way to a Log/Div/Sqrt and still be a suspect
SUBNORMAL_SHARE = 0.10  # share of a tensor's values in the format's subnormal range (few significant bits) worth a finding

# --- acceptance and search
DEFAULT_ACCEPT = ("finite", "rel-l2<=0.05")
DEFAULT_BUDGET = 64  # evaluations (plans run) one bisect may spend
PROXY_CLIPS = 4  # clips of a task dataset the output-level search judges plans on

# --- workers (distributed.py, --workers/--ray-address)
ACTOR_RESTARTS = 3  # a lost actor is restarted, and its evaluation retried, this often before the run fails

# --- baselines (what the tools users know would do)
RANGE_RULE_DATA_MAX = 512.0  # ModelOpt AutoCast's default --data_max
RANGE_RULE_INIT_MAX = 65504.0  # AutoCast's default --init_max (FP16's largest finite value)

# --- files
COMMAND_FILE_MAX_BYTES = 16 << 20  # the report embeds a run's command files only up to this size (thousands of pins fit)
# reference/ (samples and FP32 outputs for the verify scripts) holds each sample twice (raw and Polygraphy JSON):
# past this many bytes an evenly spread subset is written (a decoder's 53 recorded steps with their KV cache: 2.2 GB)
REFERENCE_MAX_BYTES = 256 << 20
MAX_VOCAB_ID = 10_000_000  # a vocabulary id past this is a damaged file, not a tokenizer (a list this long would be GBs)

# --- presentation
TOP_TENSORS = 8  # offending tensors the terminal lists
REPORT_TENSORS = 25  # largest errors the report lists
REPORT_TRACE = 60  # origin trace rows the report lists before "... more"


def evaluation_bound(pins: int, candidates: int) -> int:
    """Evaluations the pin search promises to stay within: k * ceil(log2 N) + 3 for k pins among N candidates."""
    return max(pins, 1) * math.ceil(math.log2(max(candidates, 2))) + 3
