#!/bin/sh
# check-kernels.sh: CI's check of the GPU kernels, on a machine without a GPU (scripts/cuda-sdk.sh's
# environment exported). It regenerates gpu/kernels.fatbin and gpu/kernels.ptx from gpu/kernels/kernels.cu
# and requires the committed bytes (nvcc's output is byte-stable: a difference means the sources changed
# without `go generate ./gpu`), checks that the PTX defines every kernel that gpu/device_gpu.go loads, and
# assembles the PTX with ptxas for sm_80 and sm_90, failing on any register spill.
set -eu
: "${CUDA_SDK_PTXAS:?run eval \"\$(scripts/cuda-sdk.sh)\" first}"
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp gpu/kernels.fatbin gpu/kernels.ptx "$work/"
scripts/gen-kernels.sh
status=0
for f in kernels.fatbin kernels.ptx; do
	if ! cmp -s "gpu/$f" "$work/$f"; then
		echo "gpu/$f differs from what gpu/kernels/kernels.cu compiles to: run go generate ./gpu and commit it"
		cp "$work/$f" "gpu/$f" # leave the tree as it was
		status=1
	fi
done
names=$(sed -n '/^var kernelNames/s/.*{\(.*\)}.*/\1/p' gpu/device_gpu.go | tr -d '",')
for k in $names; do
	grep -q "\.entry $k(" gpu/kernels.ptx || { echo "gpu/kernels.ptx has no kernel $k"; status=1; }
done
for arch in sm_80 sm_90; do
	$CUDA_SDK_PTXAS -v -arch=$arch -o /dev/null gpu/kernels.ptx 2>"$work/ptxas.$arch"
	if grep -E '[1-9][0-9]* bytes spill (stores|loads)' "$work/ptxas.$arch"; then
		echo "ptxas $arch: a kernel spills registers"
		status=1
	fi
	echo "ptxas $arch: $(grep -c 'Compiling entry' "$work/ptxas.$arch") kernels, no spills"
done
exit $status
