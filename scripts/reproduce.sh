#!/bin/sh
# The miniature reproduction of docs/RESULTS.md: stage-2 arms trained from the demo's base model, each for
# the same steps on the same data, scored on the demo's test split. Usage, from the repository root:
#
#   scripts/reproduce.sh [SEEDS...]        # default seeds: 1 2 3
#   go run ./scripts/results               # the tables of docs/RESULTS.md from runs/reproduce (also written
#                                          # to runs/reproduce/tables.md at the end)
#
# It runs `flextrain demo` first (reused when finished), then per seed and arm a `fit` of
# configs/quickstart.yaml into runs/reproduce/ARM-sSEED and `eval` on the test split; a finished arm (its
# eval.json) is skipped, so an interrupted reproduction goes on where it stopped. Each run's eval.json,
# metrics.jsonl, peak RSS (time.txt, GNU time) and, with FlexAttention, selection.json (how much of each small
# test target the answer row selected: `flextrain selection`) stay in its folder. Order: the main table for
# the first seed, its sweeps, the curves (seed 1, evaluated on the validation split every 50 steps), the
# other seeds, the step timings, and last the figures of docs/ (curves, selected cells over test images).
# RATIO is the random/center/topk cell fraction of the main table, the attention arm's mean selected
# fraction at threshold 48; each sweep pairs a threshold with the fraction it selects from this base model.
set -eu
SEEDS=${*:-1 2 3}
RATIO=${RATIO:-0.68}
BIN=${BIN:-bin/flextrain}
go build -o "$BIN" ./cmd/flextrain
"$BIN" demo
TEST=runs/quickstart/data/test.json
VAL=runs/quickstart/data/val.json

# run ARM SEED [FIT FLAGS...]: one arm's fit and eval, unless it is done.
run() {
	arm=$1 seed=$2
	shift 2
	out=runs/reproduce/$arm-s$seed
	[ -f "$out/eval.json" ] && return 0
	mkdir -p "$out"
	/usr/bin/time -f "%M KiB peak RSS, %e s" -o "$out/time.txt" \
		"$BIN" fit --config configs/quickstart.yaml --resume none --set output_dir="$out" --set seed="$seed" "$@" >"$out/fit.log" 2>&1
	case $arm in
	*lr-control*) ;; # no FlexAttention, no selection
	*) "$BIN" selection --model "$out" --data "$TEST" --kind small --n 1000 --draw 0 --json >"$out/selection.json" ;;
	esac
	"$BIN" eval --model "$out" --data "$TEST" >"$out/eval.json.tmp" && mv "$out/eval.json.tmp" "$out/eval.json"
	echo "$arm seed $seed: $(cat "$out/time.txt")"
}

# table SEED: the main comparison.
table() {
	run untrained "$1" --set max_steps=1 --set learning_rate=1e-30 # one step that moves no float32 weight: the copies as initialised
	run lr-control "$1" --set flex.view=lr                         # the same layers, no HR tokens
	run attention "$1"                                              # the paper's selection, threshold 48
	for s in random center topk; do
		run "$s" "$1" --set flex.strategy=$s --set flex.ratio="$RATIO"
	done
	run full-hr "$1" --set flex.strategy=topk --set flex.ratio=1 # every HR token for every HR row
}

# sweeps SEED: smaller selections (threshold, and the other strategies at the fraction it selects), and zoom
# (the HR view resampled from the same 192-pixel images: Z = 1 gives HR tokens with no more pixels than LR).
sweeps() {
	for pair in 128:0.32 192:0.14 230:0.09; do
		th=${pair%:*} r=${pair#*:}
		run "attention-t$th" "$1" --set flex.threshold="$th"
		for s in random center topk; do
			run "$s-r$r" "$1" --set flex.strategy=$s --set flex.ratio="$r"
		done
	done
	for z in 1 2; do
		run "zoom$z" "$1" --set flex.zoom=$z
	done
}

# curves: seed 1 of four arms again, evaluated on the validation split every 50 steps.
curves() {
	ev="--set eval_data_path=$VAL --set eval_steps=50"
	# shellcheck disable=SC2086 # $ev is a list of flags
	{
		run curves-lr-control 1 $ev --set flex.view=lr
		run curves-attention 1 $ev
		run curves-attention-t192 1 $ev --set flex.threshold=192
		run curves-full-hr 1 $ev --set flex.strategy=topk --set flex.ratio=1
	}
}

# timing: one training step of the stage-2 model per view and HR fraction (`flextrain bench`: synthetic
# inputs, median of 30 steps; the ratio is the topk fraction, unused by lr and hd-seq), run last so that
# nothing else shares the machine.
timing() {
	mkdir -p runs/reproduce/bench
	for spec in lr:1 flex-union:0.09 flex-union:0.14 flex-union:0.32 flex-union:0.68 flex-union:1 flex-dense:0.14 hd-seq:1; do
		mode=${spec%:*} ratio=${spec#*:}
		out=runs/reproduce/bench/$mode-$ratio.json
		[ -f "$out" ] && continue
		"$BIN" bench --config configs/quickstart.yaml --mode "$mode" --strategy topk --ratio "$ratio" --steps 30 --json >"$out.tmp" && mv "$out.tmp" "$out"
	done
}

# figures: the small-text accuracy curves and the cells the answer row selects at thresholds 48 and 192.
figures() {
	c=runs/reproduce/curves
	"$BIN" plot "$c-lr-control-s1" "$c-attention-s1" "$c-attention-t192-s1" "$c-full-hr-s1" --subset small --out docs/curves.png
	"$BIN" selection --model runs/quickstart/flex --data "$TEST" --kind small --n 3 --draw 3 --out docs/selection-t48.png
	"$BIN" selection --model runs/reproduce/attention-t192-s1 --data "$TEST" --kind small --n 3 --draw 3 --out docs/selection-t192.png
}

first=${SEEDS%% *}
table "$first"
sweeps "$first"
curves
for seed in $SEEDS; do
	[ "$seed" = "$first" ] && continue
	table "$seed"
	sweeps "$seed"
done
timing
figures
go run ./scripts/results >runs/reproduce/tables.md
