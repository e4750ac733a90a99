#!/usr/bin/env bash
# Profile a model on this GPU, then validate the simulator against real replays of a trace at
# three loads (the profile is a grid of synthetic steps: no step of the trace is used to fit).
#
#   bash benchmarks/calibrate_loads.sh MODEL TP TRACE OUTDIR [N_LIGHT N_MEDIUM N_SATURATED]
#
# light: the first N_LIGHT requests as recorded; medium: N_MEDIUM at 4x the arrival rate;
# saturated: N_SATURATED at 16x with a 40-block KV cache (preemptions). Each load writes
# OUTDIR/<load>/ (validation.json, step_errors.parquet, validation.html) and a log.
# Environment: LOADS (default "light medium saturated"), MAX_MODEL_LEN (default 4096, for the
# profile and every replay alike), PYTHON (default python3), PROFILE (an existing profile:
# skip the profiling), VALIDATE_FLAGS (more flags for every nanosim validate, e.g.
# --no-step-jitter).
set -u
model=$1 tp=$2 trace=$3 out=$4
n1=${5:-200} n2=${6:-400} n3=${7:-600}
py=${PYTHON:-python3}
len=${MAX_MODEL_LEN:-4096}
mkdir -p "$out"
prof=${PROFILE:-$out/profile.json}
if [ -z "${PROFILE:-}" ]; then
    $py -m nanosim profile --model "$model" --tp "$tp" --max-model-len "$len" --out "$prof" \
        --no-progress 2>&1 | tee "$out/profile.log" || exit 1
fi
run() {  # name, requests, rate scale, extra flags
    local name=$1 n=$2 scale=$3; shift 3
    $py -m nanosim validate --trace "$trace" --model "$model" --tp "$tp" --max-requests "$n" \
        --rate-scale "$scale" --max-model-len "$len" --profile "$prof" --out "$out/$name" \
        --no-progress ${VALIDATE_FLAGS:-} "$@" 2>&1 | tee "$out/$name.log"
}
for load in ${LOADS:-light medium saturated}; do
    case $load in
        light) run light "$n1" 1 ;;
        medium) run medium "$n2" 4 ;;
        saturated) run saturated "$n3" 16 --num-kv-blocks 40 ;;
        *) echo "unknown load $load" >&2; exit 2 ;;
    esac
done
