#!/bin/sh
# The miniature reproduction of docs/RESULTS.md: stage-2 arms trained from the demo's base model, each for
# the same steps on the same data, scored on the demo's test split. Usage, from the repository root:
#
#   scripts/reproduce.sh [SEEDS...]        # default seeds: 1 2 3
#
# It runs `flextrain demo` first (reused when finished), then per seed and arm a `fit` of
# configs/quickstart.yaml into runs/reproduce/ARM-sSEED, and `eval` on the test split. Each run's
# eval.json, metrics.jsonl and the peak RSS (time.txt, GNU time) stay in its folder; the table of
# docs/RESULTS.md is their mean and spread. RATIO is the topk/random/center cell fraction, set to the
# attention arm's mean selected fraction (the demo's run: hr_selected_frac in runs/quickstart/flex).
set -eu
SEEDS=${*:-1 2 3}
RATIO=${RATIO:-0.68}
BIN=${BIN:-bin/flextrain}
go build -o "$BIN" ./cmd/flextrain
"$BIN" demo
TEST=runs/quickstart/data/test.json
for seed in $SEEDS; do
	for arm in untrained lr-control attention random center topk full-hr; do
		out=runs/reproduce/$arm-s$seed
		[ -f "$out/eval.json" ] && continue
		case $arm in
		untrained) sets="--set max_steps=1 --set learning_rate=1e-30" ;; # one step that moves no float32 weight: the copies as initialised
		lr-control) sets="--set flex.view=lr" ;;                     # the same layers, no HR tokens
		attention) sets="" ;;                                         # the paper's selection
		random | center | topk) sets="--set flex.strategy=$arm --set flex.ratio=$RATIO" ;;
		full-hr) sets="--set flex.strategy=topk --set flex.ratio=1" ;; # every HR token for every HR row
		esac
		mkdir -p "$out"
		# shellcheck disable=SC2086 # $sets is a list of flags
		/usr/bin/time -f "%M KiB peak RSS, %e s" -o "$out/time.txt" \
			"$BIN" fit --config configs/quickstart.yaml --resume none --set output_dir="$out" --set seed="$seed" $sets >"$out/fit.log" 2>&1
		"$BIN" eval --checkpoint "$out" --data "$TEST" >"$out/eval.json.tmp" && mv "$out/eval.json.tmp" "$out/eval.json"
		echo "$arm seed $seed: $(cat "$out/time.txt")"
	done
done
