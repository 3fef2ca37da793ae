#!/bin/sh
# The README's performance figures for one build, side by side with the PyTorch reference of
# ../shared/ref/bench.py (Debian python3-torch with libopenblas0-pthread). Usage: scripts/bench-campaign.sh OUT
set -e
out=$1
ft=${TMPDIR:-/tmp}/ft-campaign
go build -o $ft ./cmd/flextrain
B="--config configs/bench.yaml --strategy topk --ratio 0.1"
echo "# $(date) build $(git rev-parse --short HEAD)" >> $out
for round in 1 2; do
  for mode in flex-union flex-dense lr hd-seq; do
    echo "torch $mode $(/usr/bin/python3 ../shared/ref/bench.py $mode --strategy topk --ratio 0.1 --repeats 1 2>/dev/null | head -1)" >> $out
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
