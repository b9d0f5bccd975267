#!/usr/bin/env bash
# GPU speed check of issue 11, one script, about 6 minutes on one H100/H200 (compilation included).
#   bash ../shared/device/prepare.sh            # here, once: wheels into .whl/, data into .devdata/
#   bash benchmarks/device_check.sh [OUT]       # on the GPU machine (OUT defaults to $OUT or ./device_out)
# Prints markdown tables and writes them to OUT/*.md. Every step has its own timeout, so one
# that hangs or fails leaves the others' tables. Rehearse on a CPU with DEVICE=cpu QUICK=1
# (tiny jobs; compiled with the aot_eager backend, which needs no compiler), PY=$PWD/.venv/bin/python.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-device_out}}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import jsonargparse, albumentations" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
if [ "${QUICK:-0}" = 1 ]; then  # CPU rehearsal: tiny jobs, few steps
  BIG=vit_tiny_p8@64; REF=resnet9@64; STEPS="--steps 2 --warmup 1"; BATCHES="1 2"
  COMPILE="--compile always --compile-backend aot_eager"
else
  BIG=vit_small_p16@256; REF=resnet9@256; STEPS="--steps 10 --warmup 3"; BATCHES="1 8 32"
  COMPILE="--compile always --compile-mode reduce-overhead"
fi

step() {  # step NAME SECONDS COMMAND...: run with a timeout, keep stdout as OUT/NAME.md
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.md" 2> "$OUT/$name.log"
  local rc=$?
  echo "rc=$rc wall=$((SECONDS - start))s" >> "$OUT/$name.md"
  grep -v '^$' "$OUT/$name.md" | grep -E '^\||^Full|^rc=' || tail -3 "$OUT/$name.log"
}

cd benchmarks
# 1. Today's eager step against ResNet-9, batch 1 (the baseline of the targets).
step train_eager_b1 90 $PY bench_train.py --device "$DEVICE" --jobs $REF $BIG --batch-size 1 $STEPS --profile
# 2. Compiled (CUDA graphs), batch 1: ViT and ResNet-9 compiled the same way; no host sync; profile.
step train_compiled_b1 200 $PY bench_train.py --device "$DEVICE" --jobs $REF $BIG --batch-size 1 $STEPS \
  $COMPILE --sync-check --profile
# 3. Compiled, larger batches (images/s targets).
for b in $BATCHES; do
  [ "$b" = 1 ] && continue
  step "train_compiled_b$b" 120 $PY bench_train.py --device "$DEVICE" --jobs $BIG --batch-size "$b" $STEPS $COMPILE
done
# 4. Generator inference and forward+backward, with peak memory.
step models 60 $PY bench_models.py --device "$DEVICE" --jobs $REF $BIG
echo "tables in $OUT/"
