#!/bin/sh
# The figures of docs/PERFORMANCE.md for one build, appended to OUT: `flextrain bench` in every mode (two
# rounds), the --versus ratios, and every mode with --cached.
#
#   scripts/bench-campaign.sh OUT
#   REFERENCE=path/to/bench.py scripts/bench-campaign.sh OUT
#
# The PyTorch column is optional. Without REFERENCE only flextrain is timed. With REFERENCE naming a script
# that times the same model and step in PyTorch (not shipped with flextrain), each flextrain run of the two
# rounds follows a run of `$PYTHON $REFERENCE MODE --strategy topk --ratio 0.1 --repeats 1`, whose first line
# of output goes into a "reference MODE" line. PYTHON defaults to /usr/bin/python3, Debian's, whose
# python3-torch needs libopenblas0-pthread beside it to run at speed (docs/PERFORMANCE.md).
set -e
out=$1
if [ -z "$out" ]; then
  echo "usage: [REFERENCE=script] $0 OUT" >&2
  exit 2
fi
if [ -n "$REFERENCE" ] && [ ! -f "$REFERENCE" ]; then
  echo "$0: REFERENCE=$REFERENCE is not a file" >&2
  exit 2
fi
python=${PYTHON:-/usr/bin/python3}
ft=${TMPDIR:-/tmp}/ft-campaign
go build -o $ft ./cmd/flextrain
B="--config configs/bench.yaml --strategy topk --ratio 0.1"
echo "# $(date) build $(git rev-parse --short HEAD)${REFERENCE:+ reference $REFERENCE}" >> $out
for round in 1 2; do
  for mode in flex-union flex-dense lr hd-seq; do
    if [ -n "$REFERENCE" ]; then
      echo "reference $mode $($python "$REFERENCE" $mode --strategy topk --ratio 0.1 --repeats 1 2>/dev/null | head -1)" >> $out
    fi
    echo "ours $mode $($ft bench $B --mode $mode --json)" >> $out
  done
done
for i in 1 2 3 4 5; do
  echo "versus-cached $($ft bench $B --mode flex-union --versus flex-dense --steps 30 --cached | tail -1)" >> $out
done
echo "versus-uncached $($ft bench $B --mode flex-union --versus flex-dense --steps 30 | tail -1)" >> $out
echo "versus-hdseq-cached $($ft bench $B --mode flex-union --versus hd-seq --cached | tail -1)" >> $out
for mode in flex-union flex-dense lr hd-seq; do
  echo "cached-alone $mode $($ft bench $B --mode $mode --cached --json)" >> $out
done
echo "# done $(date)" >> $out
