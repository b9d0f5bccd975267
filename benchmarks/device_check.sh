#!/usr/bin/env bash
# The GPU checks in one script, on one H100/H200, parts chosen by PARTS:
#   speed    bench_train eager/compiled at batch 1, 8, 32 + bench_models: about 6 minutes
#   quality  the adopted recipe at 128 px on .devdata for QUALITY_TIME (5 min), scored by a
#            judge trained on the CPU beforehand (JUDGE, carried; e.g. cp the CPU judge to .devjudge/judge.pt)
#   pretrain masked-patch pretraining throughput at 256 px (images/s)
#   bash ../shared/device/prepare.sh            # here, once: wheels into .whl/, data into .devdata/
#   bash benchmarks/device_check.sh [OUT]       # on the GPU machine (OUT defaults to $OUT or ./device_out)
#   PARTS="speed quality pretrain" (default all three).
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

PARTS=${PARTS:-speed quality pretrain}
ROOT=$PWD
VC="$PY -m vitcycle.cli"

if [[ " $PARTS " == *" speed "* ]]; then
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
cd "$ROOT"
fi

ACC=$([ "$DEVICE" = cuda ] && echo gpu || echo cpu)
PREC=$([ "$DEVICE" = cuda ] && echo bf16-mixed || echo 32-true)
DATA=${DATA:-.devdata}
if [[ " $PARTS " == *" quality "* ]]; then
  # 5. The held-out split (the same files as on the CPU: seeded by name), 128 px training,
  #    the domain-score table of best.ckpt and its grid.
  JUDGE=${JUDGE:-.devjudge/judge.pt}
  QT=${QUALITY_TIME:-00:00:05:00}
  step split 60 $VC data split --dir-a $DATA/trainA --dir-b $DATA/trainB --out "$OUT/split" --n-test 200 --seed 0
  step quality_fit 420 $VC fit --config configs/selfie2anime_cpu.yaml --data.dir_a $DATA/trainA --data.dir_b $DATA/trainB \
    --data.image_size 128 --data.exclude "[$OUT/split/test_a.txt, $OUT/split/test_b.txt]" --model.judge "$JUDGE" \
    --trainer.accelerator $ACC --trainer.precision $PREC --trainer.max_time $QT --trainer.max_steps -1 --trainer.val_check_interval 250 \
    --trainer.default_root_dir "$OUT/s2a128" --trainer.enable_progress_bar false --model.compile.when cuda
  ckpt="$OUT/s2a128/checkpoints/best.ckpt"; [ -f "$ckpt" ] || ckpt="$OUT/s2a128/checkpoints/last.ckpt"
  step quality_eval 180 $VC eval --ckpt "$ckpt" --test-a "$OUT/split/test_a.txt" --test-b "$OUT/split/test_b.txt" \
    --judge "$JUDGE" --no-fid-kid --device $DEVICE --out "$OUT/quality_eval.json" --grid "$OUT/quality_grid.png"
fi

if [[ " $PARTS " == *" pretrain "* ]]; then
  # 6. Pretraining throughput (vit_small_p16 at 256 px, batch 64 as UVCGAN; steps over time).
  PT=${PRETRAIN_TIME:-00:00:01:30}
  step pretrain 200 $VC pretrain --config configs/pretrain.yaml --data.dir_a $DATA/trainA --data.dir_b $DATA/trainB \
    --trainer.accelerator $ACC --trainer.precision $PREC --trainer.max_time $PT --trainer.max_epochs 1000 \
    --trainer.default_root_dir "$OUT/pretrain" --trainer.enable_progress_bar false ${PRETRAIN_ARGS:-}
  $PY - "$OUT/pretrain" "$PT" >> "$OUT/pretrain.md" <<'PYEOF'
import sys, torch
from pathlib import Path
ckpt = Path(sys.argv[1]) / "checkpoints/last.ckpt"
if ckpt.is_file():
    c = torch.load(ckpt, map_location="cpu", weights_only=True)
    h, m, sec = map(int, sys.argv[2].split(":")[1:])
    batch = c["datamodule_hyper_parameters"]["batch_size"]
    print(f"pretraining: {c['global_step']} steps of batch {batch} in {h * 3600 + m * 60 + sec} s "
          f"(start-up included): {c['global_step'] * batch / (h * 3600 + m * 60 + sec):.1f} images/s or more")
PYEOF
  tail -1 "$OUT/pretrain.md"
fi
echo "tables in $OUT/"
