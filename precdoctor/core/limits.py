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
# --backend ort-cuda: the sessions of the plans last run, kept (each holds its weights on the GPU): the naive plan
# returns in the search's first round and its comparison, a found plan in its confirmation and cross-checks
KEPT_PLAN_SESSIONS = 4
# samples of one shape run as one batch along a free batch axis (backends/emulate.py): a GPU is expected to run a
# pass of 8 clips in little more than the time of one (not measured here); past 8 the activations grow for less gain
BATCH_SAMPLES = 8
# the gated emulation's live activations against the plain graph's: each tensor, its rounded copy and the select of
# the two alive at once at worst (gating.py); what a batched pass's memory estimate multiplies the plain peak by
GATED_LIVE_FACTOR = 3
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
DEFAULT_REL_L2 = 0.05  # an output diverges past this relative L2 error (compare's verdict; bisect's default acceptance). Relative,
#                        so it follows the output's magnitude; 0.05 is ~13 unit roundoffs of BF16 (2^-9) and ~100 of FP16
#                        (2^-11): a deep stack's accumulated rounding stays under it in both formats (a healthy BF16 ASR
#                        encoder: 0.030, issue 18; Whisper tiny.en BF16: 0.018), a corrupted one does not (Whisper FP16: 0.115)
DEFAULT_ATOL = 1.0  # a position of an output is off past this max abs error (silent corruption) ...
POSITION_ULPS = 16  # ... or past this many unit roundoffs of the format times the output's FP32 |max|, whichever is larger:
#                     rounding is relative, so an absolute 1.0 flags BF16's own rounding on hidden states of ~500 (its 8
#                     significant bits give ~1 per rounding there; issue 18: 72 of 4500 positions of a healthy encoder), while
#                     16 unit roundoffs (FLOOR_ULPS) is what a few layers' rounding reach and far below a corrupted position
#                     (an overflowed LayerNorm leaves the bias alone: an error of the output's own size). FP16 (u = 2^-11)
#                     keeps 1.0 up to |max| 128; BF16 (u = 2^-9) up to 32. A --atol the user gives is used as given
GROWTH = 8.0  # a node diverges when its error grows this much over its inputs ...
FLOOR_ULPS = 16  # ... and exceeds this many unit roundoffs of the format ...
MIN_DIVERGENCE = 0.05  # ... and this relative error (below it, rounding noise of near-zero tensors)
CLAMP_BAND = 1 / 16  # FP32 beyond the range held within this share of the format's largest value, same sign, is held at
#                     the format's extreme (a float32-min constant clamped to -65504, plus a score: -65504 + s), not an error
#                     of arithmetic: excluded from the error sums like an infinity, counted apart (probes.py)
ZEROED_SHARE = 0.5  # a finite tensor reading saturated infinities changes them when it holds at least one 0 FP32 lacks per
#                     two infinities read (1 / inf: one per infinity; a rounding tie in x - max: a handful among thousands)
UNDERFLOW_SHARE = 0.01  # share of a tensor's nonzero values flushing to 0 that makes it a suspect
SENSITIVE_HOPS = 4  # ops a flushed value may pass (sums, clamps, reshapes) on its way to a Log/Div/Sqrt and still be a suspect
SUBNORMAL_SHARE = 0.10  # share of a tensor's values in the format's subnormal range (few significant bits) worth a finding

# --- fix by rewrite
CONSTANT_DISTORTION = 0.25  # a constant the format holds this far off (relative) is lost: 0 under a Cast, 5.96e-8 for 1e-10
#                             under clamping; 1e-5 * 2^-6 (1.5e-7 -> 1.8e-7 in FP16) still guards a zero variance
MIN_HEADROOM = 2.0  # a value scaled before squaring may grow this much past the samples' largest before its square overflows
#                     again: the least headroom a norm rewrite gives up to (from rewrite.HEADROOM) to hold its epsilon
EDGE_ROW_STRIDE = 8  # edge inputs: every 8th position (all axes but the last) of a sample zeroed, every 8th + 4 made
#                      constant (its row mean), so zero-variance rows sit beside the sample's own values

# --- acceptance and search
DEFAULT_ACCEPT = ("finite", f"rel-l2<={DEFAULT_REL_L2:g}")
# a plan keeping this share of the candidate nodes in FP32 is not a reduced-precision model that
# works: it is the FP32 model with a few ops lowered (an `--accept 'max-abs<=0'` met by pinning everything). 90 % is
# far past every real fix measured (the Whisper demo pins 2 of 224 nodes, the planted faults at most 5 of ~100) and
# leaves room for tiny models whose minimal fix is most of them (3 of a 4-node Exp/ReduceSum/Div); such a plan gets
# its own verdict, a failure
MOSTLY_FP32_SHARE = 0.9
DEFAULT_BUDGET = 64  # evaluations (plans run) one bisect may spend
PROXY_CLIPS = 4  # clips of a task dataset the output-level search judges plans on

# --- transcribing a dataset (tasks/judge.py): shares of --memory-budget (MEMORY_BUDGET_GB), the rest left to the encoder's
# own pass and the sessions
# clips decoded in one batch (greedy, KV cache, tasks/decoding.py): each decoder step is one call for the chunk instead of
# one per clip; on a GPU a step of 16 rows costs about one of 1, and past it a chunk mostly waits on its longest clip
# (rows that ended are still fed). Fewer where one clip's encoder states, cache, logits and features are large
# (Whisper large: ~0.7 GB a clip) so that the chunk stays within DECODE_MEMORY_SHARE of the budget
DECODE_CHUNK = 16
DECODE_MEMORY_SHARE = 0.5
FEATURES_MEMORY_SHARE = 0.25  # model inputs (log-mel: 0.96 MB a Whisper clip) kept across a run's passes; past it recomputed

# --- workers (distributed.py, --workers/--ray-address)
ACTOR_RESTARTS = 3  # a lost actor is restarted, and its evaluation retried, this often before the run fails
ACTOR_CLOSE_SECONDS = 10.0  # a worker's clean-up (its temporary weight store) waited for at the end of a run, then it is killed

# --- baselines (what the tools users know would do)
RANGE_RULE_DATA_MAX = 512.0  # ModelOpt AutoCast's default --data_max
RANGE_RULE_INIT_MAX = 65504.0  # AutoCast's default --init_max (FP16's largest finite value)

# --- files
COMMAND_FILE_MAX_BYTES = 16 << 20  # the report embeds a run's command files only up to this size (thousands of pins fit)
# reference/ (samples and FP32 outputs for the verify scripts) holds each sample twice (raw and Polygraphy JSON):
# past this many bytes an evenly spread subset is written (a decoder's 53 recorded steps with their KV cache: 2.2 GB)
REFERENCE_MAX_BYTES = 256 << 20
MAX_VOCAB_ID = 10_000_000  # a vocabulary id past this is a damaged file, not a tokenizer (a list this long would be GBs)

# --- an external judge (bisect --check CMD)
CHECK_OUTPUT_CHARS = 300  # the end of a failing check's stderr (else stdout) the log shows: its reason, not its whole log

# --- presentation
TOP_TENSORS = 8  # offending tensors the terminal lists
REPORT_TENSORS = 25  # largest errors the report lists
REPORT_TRACE = 60  # origin trace rows the report lists before "... more"


def evaluation_bound(pins: int, candidates: int) -> int:
    """Evaluations the pin search promises to stay within: k * ceil(log2 N) + 3 for k pins among N candidates."""
    return max(pins, 1) * math.ceil(math.log2(max(candidates, 2))) + 3

# --- the FP32 baseline of a task (tasks/baseline.py): a setup this broken is the task's fault, not the precision's
BASELINE_MAX_WER = 2.0  # FP32 WER past 200 %: more errors than twice the reference words. A weak model on a hard
#                         language stays well below it; a decode looping to the token limit on a 20-word clip reaches
#                         ~1000 % (the multilingual Whisper decoded with the English-only prompt: 673-1480 %)
BASELINE_LOOP_SHARE = 0.5  # more than half the decodes loop: a setup problem (a healthy model loops on the odd clip)
BASELINE_EMPTY_SHARE = 0.5  # more than half the transcripts empty where the reference is not
LOOP_TAIL = 16  # a decode loops when its last 16 tokens (or words) repeat ...
LOOP_PERIOD = 4  # ... a cycle of at most 4 ("The The The ...", "I'm not. I'm not. ..."): 4+ repetitions of the cycle
