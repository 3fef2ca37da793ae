#!/bin/sh
# gen-kernels.sh: compile gpu/kernels/kernels.cu into gpu/kernels.fatbin (sm_80 and sm_90 code, compute_80
# PTX that newer chips compile at load) and gpu/kernels.ptx, the PTX that CI checks with ptxas. Run by
# `go generate ./gpu` with the SDK's environment (scripts/cuda-sdk.sh prints it):
#
#   eval "$(scripts/cuda-sdk.sh)" && go generate ./gpu
#
# -fmad=false keeps every multiply and add apart, as the CPU ops compute them (gpu/kernels/kernels.cu).
set -eu
: "${CUDA_SDK_NVCC:?run eval \"\$(scripts/cuda-sdk.sh)\" first}"
cd "$(dirname "$0")/../gpu"
FLAGS="-fmad=false -O3 -std=c++14"
$CUDA_SDK_NVCC $FLAGS -fatbin \
	-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80 \
	-o kernels.fatbin kernels/kernels.cu
$CUDA_SDK_NVCC $FLAGS -ptx -arch=compute_80 -o kernels.ptx kernels/kernels.cu
