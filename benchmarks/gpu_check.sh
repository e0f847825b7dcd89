#!/usr/bin/env bash
# GPU check, under 5 minutes on one modern GPU: bf16 training throughput and MFU of gpt_small, with and
# without activation checkpointing, and, when the machine has 2 GPUs, the same run under FSDP2 (ZeRO-3).
#
#   bash benchmarks/gpu_check.sh [output folder, default /tmp/minigpt_gpu_check]
#
# Needs no network: the corpus is the running Python's standard library (data=python_stdlib). Prints one
# line per run: tokens/s and MFU (against the datasheet peak in minigpt/scale/peak_flops.py) of the last
# throughput window, and the final losses. Record the lines in docs/scaling.md ("GPU check").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/minigpt_gpu_check}
PY=${PYTHON:-python}
STEPS=${STEPS:-300}
COMMON=(
  model=gpt_small model.dropout=0.0 data=python_stdlib data.corpus.max_files=300 data.batch_size=32
  trainer=gpu precision=bf16_mixed "trainer.max_steps=$STEPS" "trainer.val_check_interval=$STEPS"
  trainer.limit_val_batches=8 trainer.log_every_n_steps=10 callbacks.throughput.window=50
  callbacks.samples.num_samples=0 final_samples=0 trainer.enable_progress_bar=false
  "paths.runs_dir=$OUT" "paths.cache_dir=$OUT/cache"
)

report() {  # $1: run name; prints the last tokens/s and MFU and the final losses from the run's CSV
  "$PY" - "$OUT/$1" "$1" <<'EOF'
import sys
from minigpt.evaluation.logs import find_metrics_csv, read_metrics
metrics = read_metrics(find_metrics_csv(sys.argv[1]))
last = {key: values[-1][1] for key, values in metrics.items() if values}
print(f"{sys.argv[2]}: {last.get('perf/tokens_per_s', float('nan')):,.0f} tokens/s, "
      f"MFU {100 * last.get('perf/mfu', float('nan')):.1f}%, train/loss {last.get('train/loss', float('nan')):.3f}, "
      f"val/loss {last.get('val/loss', float('nan')):.3f}")
EOF
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" train.py "${COMMON[@]}" "hydra.run.dir=$OUT/bf16"
"$PY" train.py "${COMMON[@]}" model.activation_checkpointing=true "hydra.run.dir=$OUT/bf16_ckpt"
report bf16
report bf16_ckpt
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
  "$PY" train.py "${COMMON[@]}" trainer.devices=2 strategy=fsdp strategy.zero=3 "hydra.run.dir=$OUT/fsdp2_x2"
  report fsdp2_x2
else
  echo "fsdp2_x2: skipped (one GPU)"
fi
