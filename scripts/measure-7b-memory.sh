#!/bin/sh
# The memory of `flextrain predict` on a LLaVA-1.5-7B-shaped model in float16, against `flextrain plan`.
# Usage, from the repository root:
#
#   scripts/measure-7b-memory.sh [DIR]         # DIR (default /tmp/llava-7b) receives the model, 14 GB
#
# scripts/make-llava-7b.py writes the model once (random values, liuhaotian/llava-v1.5-7b's shapes and files;
# Debian's python3-torch), then the script prints the plan for the same prompt and answer length, runs predict
# under GNU time and prints its peak resident memory and the ratio plan/measured. On the 24 GiB development
# machine: 14.22 GiB measured, 14.19 GiB planned, in about two minutes.
set -eu
DIR=${1:-/tmp/llava-7b}
BIN=${BIN:-bin/flextrain}
NEW=4
go build -o "$BIN" ./cmd/flextrain
[ -f "$DIR/llava-v1.5-7b/config.json" ] || /usr/bin/python3 scripts/make-llava-7b.py "$DIR"
"$BIN" plan --model "$DIR/llava-v1.5-7b" --max-new-tokens $NEW
"$BIN" plan --model "$DIR/llava-v1.5-7b" --max-new-tokens $NEW --json >"$DIR/plan.json"
/usr/bin/time -f '%M %e' -o "$DIR/peak-kb.txt" "$BIN" predict --model "$DIR/llava-v1.5-7b" \
	--image testdata/tiny/images/train-000000.png --question "What is in the image?" --max-new-tokens $NEW --json
python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]
plan = json.load(open(d + "/plan.json"))["Total"]
kb, wall = open(d + "/peak-kb.txt").read().split()[-2:]
peak = int(kb) * 1024
print("predict peak RSS %.2f GiB, plan %.2f GiB, plan/measured %.3f, %s s" % (peak / 2**30, plan / 2**30, plan / peak, wall))
PY
