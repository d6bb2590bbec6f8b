#!/usr/bin/env bash
# The newcomer's path on the embedded synthetic dataset: synthesize it, train with the quick config, evaluate on the
# held-out fold, run inference, and say where everything is. `make demo` sets up .venv and runs this.
set -euo pipefail
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO_DIR=${DEMO_DIR:-$ROOT/demo}
DATA=$DEMO_DIR/data
EPOCHS=${EPOCHS:-40}
start=$(date +%s)

if [ ! -f "$DATA/datalist.json" ]; then
    "$PYTHON" -m custom_nets.data synthesize "$DATA" --num_cases 20 --seed 0
    "$PYTHON" -m custom_nets.data datalist "$DATA" --num_folds 5 --seed 0
fi
"$PYTHON" -m custom_nets.data montage "$DATA" --case BraTS2021_00001 --output_file "$DEMO_DIR/montage.png"

cd "$ROOT/bundle"
"$PYTHON" -m monai.bundle run training --config_file "['configs/train.json','configs/quick.json']" \
    --dataset_dir "$DATA" --output_dir "$DEMO_DIR/train" --epochs "$EPOCHS"
"$PYTHON" -m monai.bundle run evaluating \
    --config_file "['configs/train.json','configs/evaluate.json','configs/quick.json']" \
    --dataset_dir "$DATA" --output_dir "$DEMO_DIR/evaluate" --save_predictions true
"$PYTHON" -m monai.bundle run --config_file "['configs/inference.json','configs/quick.json']" \
    --dataset_dir "$DATA" --output_dir "$DEMO_DIR/inference" --overwrite true

"$PYTHON" - "$DEMO_DIR" "$ROOT/bundle/models" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
demo, models, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
metrics = json.load(open(f"{demo}/evaluate/summary.json"))["metrics"]
dice = "  ".join(f"{r} {metrics[f'dice_{r}']['mean']:.3f}" for r in ("WT", "TC", "ET"))
hd95 = "  ".join(f"{r} {metrics[f'hd95_{r}']['mean']:.1f}" for r in ("WT", "TC", "ET"))
print(f"""
Vox2Vox demo finished in {seconds // 60} min {seconds % 60} s.
  dataset          {demo}/data (20 synthetic BraTS-like cases) and {demo}/montage.png
  model            {models}/model.pt (best generator), {models}/checkpoint_epoch=N.pt (resumable)
  training log     {demo}/train (config.json, versions.json, tensorboard/, validation/epoch_NNNN.png)
  evaluation       {demo}/evaluate/metrics.csv, summary.json, predictions/
                   mean Dice {dice}; mean HD95 (mm) {hd95}
  inference        {demo}/inference/<case>.nii.gz and <case>.png
  TensorBoard      tensorboard --logdir {demo}/train/tensorboard
""")
PY
