#!/bin/sh
# gpu-check.sh build|run|table: the GPU path checked on a device. The lent GPU machines have a driver,
# CUDA and Python with PyTorch but no Go, so everything is built here and run there:
#
#   scripts/gpu-check.sh build     # here: .device/ (git-ignored): the gpu and model tests and flextrain,
#                                  # built with -tags gpu; with FLEXTRAIN_REF=DIR, the PyTorch reference
#                                  # implementation's bench.py and flexref.py from DIR (not part of flextrain)
#   scripts/gpu-check.sh run       # on the GPU machine, from the repository root (.device carried there)
#   scripts/gpu-check.sh table DIR # the table of a run's results in DIR (its $OUT): run prints it at its end,
#                                  # and a run cut short by its time limit still brings the files back
#
# run finds cuBLAS and NCCL (the CUDA toolkit's lib64, the system's, or the nvidia-* wheels that PyTorch
# installs), prints nvidia-smi's view of the GPU, then, each part under its own time limit so that one hang
# costs only itself:
#   1. every kernel against the CPU op it stands for (gpu.test), the golden training graph on the GPU
#      against the CPU's, and the GPU's gradients against finite differences of its loss (model.test -run
#      OnGPU);
#   2. configs/tiny.yaml trained 20 steps on the CPU and 100 on the GPU, in float32 and in bf16 (mixed
#      precision): the loss curves side by side, and bf16 against float32 on the GPU;
#   3. flextrain bench of configs/bench.yaml on the CPU and the GPU, and of configs/bench-gpu.yaml on the GPU
#      (the whole step, tower included, at batch 4; from the feature cache flex-union, flex-dense and lr at
#      batch 4, flex-union and hd-seq at batch 1, where hd-seq fits), each beside the PyTorch reference's
#      bench.py on the same GPU at the same size;
#   4. configs/bench-7b.yaml: a step at LLaVA-1.5-7B's shapes in bf16 (mixed precision; again with
#      recomputation if it fails), beside the reference's (scripts/ref-7b.py gives it a 7b size and bfloat16
#      autocast);
#   5. the kernels' benchmark at LLaVA-1.5-7B's sizes (BenchmarkDevice);
#   6. on a GPU of more than 120 GB, LLaVA-1.5's own trainable set at 7B's shapes beside the reference's;
#   7. the step at 7B's shapes at the largest batch whose flextrain plan fits the GPU, beside the reference's.
# The parts run in that order, most needed first, so that a run cut short still brings back the first ones
# (everything is written under $OUT). The bench lines are JSON; the last part prints them as one table, with
# flextrain's peak device memory, its matrix products' rate as counted on the device, and the model FLOPs
# utilization: the time those products would take at the chip's datasheet peaks over the step's time.
set -eu
cd "$(dirname "$0")/.."
case "${1:-}" in
build)
	eval "$(scripts/cuda-sdk.sh)"
	rm -rf .device && mkdir -p .device/bin .device/ref
	go test -c -tags gpu -ldflags "-s -w" -o .device/bin/gpu.test ./gpu
	go test -c -tags gpu -ldflags "-s -w" -o .device/bin/model.test ./model
	go build -tags gpu -ldflags "-s -w" -o .device/bin/flextrain ./cmd/flextrain
	tar -czf .device/bin.tar.gz -C .device bin && rm -r .device/bin # the carry's 64 MiB: compressed
	if [ -n "${FLEXTRAIN_REF:-}" ]; then
		cp "$FLEXTRAIN_REF/bench.py" "$FLEXTRAIN_REF/flexref.py" .device/ref/
		python3 scripts/ref-7b.py .device/ref # its --size 7b and --bf16
	else
		echo "FLEXTRAIN_REF not set: the PyTorch reference's benches will be skipped"
	fi
	ls -l .device .device/ref
	;;
run)
	wheel() { python3 -c "import nvidia.$1, os; print(os.path.join(list(nvidia.$1.__path__)[0], 'lib'))" 2>/dev/null || true; }
	for lib in cublas nccl; do # cuBLAS, and NCCL for the group test
		for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu "$(wheel $lib)"; do
			if [ -n "$dir" ] && ls "$dir"/lib$lib.so.* >/dev/null 2>&1; then
				export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
				echo "$lib from $dir"
				break
			fi
		done
	done
	tar -xzf .device/bin.tar.gz -C .device
	bin=.device/bin
	out=${OUT:-.device/out}
	mkdir -p "$out"
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
	nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 >"$out/gpu-name.txt" || true

	echo "== 1. kernels and the golden graph"
	timeout 150 $bin/gpu.test -test.v -test.count=1 2>&1 | tee "$out/gpu-test.txt" | grep -E '^(--- |FAIL|ok|PASS)|_test.go' || true
	(cd model && timeout 120 ../$bin/model.test -test.v -test.count=1 -test.run 'OnGPU') 2>&1 | tee "$out/model-test.txt" | tail -n 40 || true

	echo "== 2. configs/tiny.yaml, 20 steps on the CPU and 100 on the GPU, in float32 and in bf16"
	for bf16 in false true; do
		for dev in cpu cuda; do
			run=tiny-$dev-bf16=$bf16 steps=20
			[ $dev = cuda ] && steps=100
			timeout 120 $bin/flextrain fit --config configs/tiny.yaml --device $dev --set output_dir="$out/$run" \
				--set max_steps=$steps --set eval_steps=0 --set save_steps=0 --set bf16=$bf16 >"$out/$run.txt" 2>&1 ||
				tail -n 5 "$out/$run.txt"
		done
	done
	python3 - "$out" <<'EOF' || true
import json, sys
out = sys.argv[1]
def losses(run):
    try:
        return {r["step"]: r["loss"] for r in map(json.loads, open(f"{out}/{run}/metrics.jsonl")) if "loss" in r and "step" in r}
    except OSError as e:
        return {}
for bf16 in ("false", "true"):
    c, g = losses(f"tiny-cpu-bf16={bf16}"), losses(f"tiny-cuda-bf16={bf16}")
    print(f"bf16={bf16}\nstep  loss cpu   loss cuda  rel diff")
    for s in sorted(c):
        if s in g:
            print(f"{s:4d}  {c[s]:.6f}  {g[s]:.6f}  {abs(g[s] - c[s]) / abs(c[s]):.2e}")
f32, b16 = losses("tiny-cuda-bf16=false"), losses("tiny-cuda-bf16=true")
both = sorted(set(f32) & set(b16))
if both:  # issue: within 2% over 100 steps
    worst = max(both, key=lambda s: abs(b16[s] - f32[s]) / abs(f32[s]))
    print(f"on the GPU, bf16 against float32 over {len(both)} steps: largest relative difference "
          f"{abs(b16[worst] - f32[worst]) / abs(f32[worst]):.2%} at step {worst}")
EOF

	echo "== 3. flextrain bench, and the PyTorch reference on the same GPU"
	bench() { # name, time limit, then flextrain bench's arguments
		name=$1 limit=$2
		shift 2
		timeout "$limit" $bin/flextrain bench --json "$@" >"$out/bench-$name.json" 2>"$out/bench-$name.err" ||
			{ echo "bench $name failed:"; tail -n 5 "$out/bench-$name.err"; }
	}
	torch() { # name, time limit, then bench.py's arguments
		name=$1 limit=$2
		shift 2
		[ -f .device/ref/bench.py ] || return 0
		(cd .device/ref && timeout "$limit" python3 bench.py --device cuda --size gpu --strategy topk --ratio 0.1 \
			--repeats 1 "$@") >"$out/torch-$name.txt" 2>&1 || tail -n 5 "$out/torch-$name.txt"
	}
	bench small-cpu 120 --config configs/bench.yaml --device cpu --mode flex-union --versus lr --steps 10
	bench small-cuda 120 --config configs/bench.yaml --device cuda --mode flex-union --versus lr --steps 10
	topk="--strategy topk --ratio 0.1"
	bench gpu-b4-full 180 --config configs/bench-gpu.yaml --device cuda --mode flex-union $topk --steps 5 --warmup 1
	torch b4 240 --batch 4 --steps 5 --warmup 1 flex-union flex-dense lr
	bench gpu-b4 180 --config configs/bench-gpu.yaml --device cuda --cached --mode flex-union --versus flex-dense \
		$topk --steps 5 --warmup 1
	bench gpu-b4-lr 120 --config configs/bench-gpu.yaml --device cuda --cached --mode lr $topk --steps 5 --warmup 1
	bench gpu-b1 180 --config configs/bench-gpu.yaml --device cuda --cached --set per_device_train_batch_size=1 \
		--mode flex-union --versus hd-seq $topk --steps 3 --warmup 1
	torch b1 180 --batch 1 --steps 3 --warmup 1 flex-union hd-seq

	echo "== 4. LLaVA-1.5-7B's shapes in bf16, one sample; the reference under bf16 autocast"
	bench 7b 300 --config configs/bench-7b.yaml --device cuda --mode flex-union $topk --steps 3 --warmup 1
	if [ ! -s "$out/bench-7b.json" ]; then # the plan leaves little room on an H100: again with recomputation
		bench 7b-recompute 300 --config configs/bench-7b.yaml --device cuda --mode flex-union $topk --steps 3 --warmup 1 \
			--set gradient_checkpointing=true
	fi
	torch 7b 300 --size 7b --bf16 --batch 1 --steps 3 --warmup 1 flex-union

	echo "== 5. the kernels at 7B's sizes"
	timeout 120 $bin/gpu.test -test.run XX -test.bench Device -test.benchtime 20x 2>&1 | tee "$out/kernels-bench.txt" | grep -E 'Benchmark|ok|FAIL' || true

	mem=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -n 1)
	if [ "${mem:-0}" -gt 120000 ]; then # an H200: LLaVA-1.5's own trainable set (112 GiB by flextrain plan)
		echo "== 6. LLaVA-1.5's own trainable set at 7B's shapes, and the reference's"
		bench 7b-llava 300 --config configs/bench-7b.yaml --device cuda --mode flex-union $topk --steps 3 --warmup 1 \
			--set 'trainable=["model.layers.*","model.norm.*","lm_head.*"]'
		torch 7b-llava 300 --size 7b --llava-set --bf16 --batch 1 --steps 3 --warmup 1 flex-union
	fi

	echo "== 7. LLaVA-1.5-7B's shapes at the largest batch the GPU plan lets in, and the reference's"
	fits() { # batch: whether flextrain plan's total, in GiB, is within the GPU's memory, in MiB
		need=$($bin/flextrain plan --config configs/bench-7b.yaml --device cuda --set per_device_train_batch_size="$1" |
			awk '$1 == "total" {print $2}')
		[ -n "$need" ] && awk -v n="$need" -v m="${mem:-0}" 'BEGIN { exit !(n * 1024 <= m) }'
	}
	for b in 8 6 4 3 2; do
		if fits $b; then
			bench 7b-b$b 300 --config configs/bench-7b.yaml --device cuda --mode flex-union $topk --steps 3 --warmup 1 \
				--set per_device_train_batch_size=$b
			torch 7b-b$b 300 --size 7b --bf16 --batch $b --steps 3 --warmup 1 flex-union
			break
		fi
	done

	sh scripts/gpu-check.sh table "$out"
	;;
table)
	out=${2:?usage: scripts/gpu-check.sh table DIR}

	echo "== the table (median ms per step; flextrain's matrix products as they ran, and their share of the chip's peak)"
	python3 - "$out" "$(cat "$out/gpu-name.txt" 2>/dev/null)" <<'EOF' || true
import glob, json, os, sys
out, name = sys.argv[1], sys.argv[2]
# dense peaks, TFLOP/s (bfloat16 and TF32 on the tensor cores, float32), from NVIDIA's datasheets
peaks = {"H100 PCIe": (756.0, 378.0, 51.2), "H100 NVL": (835.0, 417.5, 60.0), "H100": (989.4, 494.7, 66.9),
         "H200": (989.4, 494.7, 66.9)}
peak = next((p for k, p in peaks.items() if k in name), None)
def mfu(m):
    if not peak or not m.get("product_gflop"):
        return float("nan")
    bf, tf = m.get("product_bf16_gflop", 0), m.get("product_tf32_gflop", 0)
    f32 = m["product_gflop"] - bf - tf
    return (bf / peak[0] + tf / peak[1] + f32 / peak[2]) / m["median_ms"]  # GFLOP / (TFLOP/s) is ms
rows = []
for f in sorted(glob.glob(f"{out}/bench-*.json")):
    try:
        d = json.load(open(f))
    except ValueError:
        continue
    for m in d.get("modes", [d]):
        rows.append(("flextrain", os.path.basename(f)[6:-5], m.get("device", "?") + " " + m.get("products", ""), m["mode"],
                     m["median_ms"], m.get("device_ms", 0), m.get("gflop_per_sec", 0), m.get("sel_frac", 0),
                     m.get("peak_device_mib", 0) / 1024, m.get("product_tflops", 0), mfu(m)))
for f in sorted(glob.glob(f"{out}/torch-*.txt")):
    for line in open(f):
        if line.startswith("{"):
            m = json.loads(line)
            gf = (m["gflop_decoder"] + m["gflop_vision"]) / (m["median_ms"] / 1e3)
            rows.append(("pytorch", os.path.basename(f)[6:-4], m["device"], m["mode"], m["median_ms"], float("nan"), gf,
                         m["sel_frac"], m.get("peak_device_mib", 0) / 1024, float("nan"), float("nan")))
print(f"GPU {name!r}; peaks (bf16, tf32, fp32 TFLOP/s) {peak}")
print(f'{"impl":10s} {"run":12s} {"device":16s} {"mode":11s} {"ms/step":>9s} {"dev ms":>9s} {"GFLOP/s":>9s} {"sel":>6s} '
      f'{"peak GiB":>9s} {"prod TF/s":>10s} {"MFU":>6s}')
for r in rows:
    print(f"{r[0]:10s} {r[1]:12s} {r[2]:16s} {r[3]:11s} {r[4]:9.1f} {r[5]:9.1f} {r[6]:9.0f} {r[7]:6.3f} {r[8]:9.2f} {r[9]:10.1f} {r[10]:6.1%}")
EOF
	;;
*)
	echo "usage: scripts/gpu-check.sh build|run|table DIR" >&2
	exit 2
	;;
esac
