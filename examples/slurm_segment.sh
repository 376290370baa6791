#!/usr/bin/env bash
# hqsam-edge segment over a SLURM job array: one shard of the image set per array task, then one merge.
#
#   bash examples/slurm_segment.sh            on the login node: submits the array and the merge after it
#
# Each task runs `hqsam-edge segment` without --shard: it reads its shard from SLURM_ARRAY_TASK_ID,
# SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT. All tasks write into one OUT on a shared file system
# (per-image files, and their record OUT/.shards/K-of-N.json when done). A task that fails or is preempted
# resumes where it stopped when resubmitted (`sbatch --array=K ...` for the missing ones: the merge names
# them). The merge runs after every task has ended (afterany), writes OUT/results.json and
# OUT/errors.json once every shard is complete, and otherwise exits non-zero naming the missing shards.
#
# Settings (environment): SHARDS, MODEL (artifact folder from `hqsam-edge export` / `build`), IMAGES (a quoted
# glob), BOXES (COCO annotations or a boxes mapping), OUT.
#SBATCH --job-name=hqsam-segment
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --output=logs/segment_%A_%a.out
set -euo pipefail

SHARDS=${SHARDS:-8}
MODEL=${MODEL:-build/hq_vit_l}
IMAGES=${IMAGES:-"data/coco/val2017/*.jpg"}
BOXES=${BOXES:-data/coco/annotations/instances_val2017.json}
OUT=${OUT:-results/val2017}

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then  # the login node: submit the array, then the merge after it
    mkdir -p logs
    export SHARDS MODEL IMAGES BOXES OUT
    array=$(sbatch --parsable --array=0-$((SHARDS - 1)) "$0")
    sbatch --parsable --dependency=afterany:"$array" --job-name=hqsam-merge --time=1:00:00 \
        --output=logs/merge_%j.out --wrap "hqsam-edge merge '$OUT'"
    exit 0
fi

# An array task: exit 3 means "finished, some bad images left out" (listed by the merge in errors.json).
hqsam-edge segment "$MODEL" --images "$IMAGES" --boxes "$BOXES" --out "$OUT" --backend tensorrt \
    --precision fp16 --quiet || [ $? -eq 3 ]
