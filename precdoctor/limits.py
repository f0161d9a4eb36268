"""Every default, threshold and size limit of precdoctor, each in one place, with why it is what it is."""
from __future__ import annotations

import math
import os

# --- protobuf and model size
PROTOBUF_LIMIT = 2_000_000_000  # protobuf refuses to serialize one message past 2 GB
INLINE_LIMIT = 1_900_000_000  # past this many bytes of inline weights a model goes through external data (room for the graph)
WEIGHT_STORE_MIN_BYTES = 4096  # initializers this large move to the shared external-data store
WEIGHT_STORE_ALIGN = 4096  # page-aligned offsets let ONNX Runtime map the weights instead of copying them

# --- ONNX Runtime sessions
MAX_SHAPE_SESSIONS = 3  # concrete-shape sessions per model before one symbolic-shape session serves the rest
PROBE_GROUP = 64  # probe vectors per graph output: one output for all of them makes session start-up quadratic
FETCH_ELEMENTS = 65_536  # tensors up to this size are fetched and measured in numpy: cheaper than in-graph probes,
#                          whose nodes cost ONNX Runtime start-up time each (a 900-node CRNN: 35,000 probe nodes)
FETCH_BUDGET_BYTES = 256 * 2**20  # fetched values one pass may hold
MEMORY_BUDGET_GB = 8.0  # activations (reference + candidate) one probe pass may compute

# --- control flow
FLAT_NODE_LIMIT = 20_000  # nodes of a flat analysis graph (If inlined, Loop/Scan unrolled); ONNX Runtime's session start-up
#                           grows with node count, and a body unrolled past this is analysed at its boundary only

# --- what a model, a sample or a selector may ask for: checked before any work, each raisable by an environment
# variable PRECDOCTOR_<NAME> (README: Limits), read when the check runs
MAX_GRAPH_NODES = 100_000  # nodes of a model, control-flow bodies included: ONNX Runtime's session start-up and every
#                            per-node pass grow with it (20,000 nodes: 18 s of one compare); the largest ASR exports
#                            this tool is for (Whisper large, Qwen3-ASR 1.7B, decomposed) stay well below
MAX_LOOP_TRIPS = 1_000_000  # iterations of a Loop whose trip count is a constant and whose condition cannot stop it:
#                             ONNX Runtime runs them all, and a scan output of each iteration is allocated whole
#                             (a trip count of 1e9 hung the run or aborted it with std::bad_alloc)
MAX_TENSOR_ELEMENTS = 1 << 31  # elements of one tensor by shape inference on the largest sample (8 GiB in FP32):
#                                past it ONNX Runtime fails in an allocation, after minutes, with no word of ours
SELECTOR_MATCH_SECONDS = 2.0  # time one re: pin selector may take to match every node name (a backtracking
#                               pattern such as ^(a+)+$ on a long name runs for minutes in a backtracking engine)
RAISABLE = ("MAX_GRAPH_NODES", "MAX_LOOP_TRIPS", "MAX_TENSOR_ELEMENTS", "SELECTOR_MATCH_SECONDS")
ENV_PREFIX = "PRECDOCTOR_"


def limit(name: str) -> float:
    """The limit ``name`` of RAISABLE: ``PRECDOCTOR_<name>`` from the environment where set (a positive number),
    else the default above. A value that is not one is an error, said in one line."""
    from .errors import BadInput

    default = globals()[name]
    text = os.environ.get(ENV_PREFIX + name)
    if text is None or not text.strip():
        return default
    try:
        value = type(default)(float(text)) if isinstance(default, int) else float(text)
    except (ValueError, OverflowError):
        raise BadInput(f"{ENV_PREFIX}{name}={text!r} is not a number") from None
    if not value > 0:
        raise BadInput(f"{ENV_PREFIX}{name}={text!r} must be more than 0")
    return value


def raise_hint(name: str) -> str:
    """How a user raises the limit ``name``: said in each message that refuses for it."""
    return f"set {ENV_PREFIX}{name} to raise the limit"


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
