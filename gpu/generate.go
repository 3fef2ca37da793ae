package gpu

// kernels.fatbin and kernels.ptx come from kernels/kernels.cu (the SDK of scripts/cuda-sdk.sh exported).
//go:generate sh ../scripts/gen-kernels.sh
