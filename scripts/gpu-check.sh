#!/bin/sh
# gpu-check.sh build|run: the GPU kernels checked on a device. The lent GPU machines have a driver, CUDA and
# Python but no Go, so the test binary is built here and run there:
#
#   scripts/gpu-check.sh build     # here: .device/gpu.test and model.test, the tests built with -tags gpu
#   scripts/gpu-check.sh run       # on the GPU machine, from the repository root (.device carried there)
#
# run finds cuBLAS (the CUDA toolkit's lib64, or the nvidia-cublas wheel that PyTorch installs), prints
# nvidia-smi's view of the GPU, runs every test (each kernel against the CPU op it stands for, then the
# golden training graph on the GPU against the CPU's), then times the pieces at LLaVA-1.5-7B's sizes
# (BenchmarkDevice).
set -eu
cd "$(dirname "$0")/.."
case "${1:-}" in
build)
	eval "$(scripts/cuda-sdk.sh)"
	mkdir -p .device
	go test -c -tags gpu -o .device/gpu.test ./gpu
	go test -c -tags gpu -o .device/model.test ./model
	echo "built .device/gpu.test .device/model.test"
	;;
run)
	for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
		"$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null || true)"; do
		if [ -n "$dir" ] && ls "$dir"/libcublas.so.* >/dev/null 2>&1; then
			export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
			echo "cuBLAS from $dir"
			break
		fi
	done
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
	.device/gpu.test -test.v -test.count=1
	(cd model && ../.device/model.test -test.v -test.count=1 -test.run 'OnGPU')
	.device/gpu.test -test.run XX -test.bench Device -test.benchtime 20x
	;;
*)
	echo "usage: scripts/gpu-check.sh build|run" >&2
	exit 2
	;;
esac
