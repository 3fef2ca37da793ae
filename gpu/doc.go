// Package gpu runs flextrain's numerical work on an NVIDIA GPU, through the CUDA driver API
// (gorgonia.org/cu), the project's own kernels and cuBLAS.
//
// Everything that touches the driver is behind the gpu build tag (`go build -tags gpu`): package cu
// initialises CUDA when it is loaded and exits the process where that fails, so a binary that imports it
// cannot fall back to the CPU. The default build stays pure Go; asked for a GPU, it answers ErrNoCUDA. The
// tag is not cuda because that one is Gorgonia's own: with it, Gorgonia compiles its CUDA machine, which
// needs cuDNN and would not run flextrain's custom ops anyway.
//
// The kernels are CUDA C (kernels/kernels.cu), compiled by `go generate` (scripts/gen-kernels.sh, the CUDA
// SDK's nvcc) into kernels.fatbin, which is committed and embedded: sm_80 and sm_90 code, and compute_80 PTX
// that newer chips compile when the module loads. CI regenerates it and checks, with ptxas, that no kernel
// spills registers (scripts/check-kernels.sh). Each kernel's launch geometry and index arithmetic also live
// in plain Go (geometry.go), and the tests run those twins against the CPU ops on odd sizes; the kernels
// themselves are checked against the same ops by device_test.go, built with the tag, on a GPU
// (scripts/gpu-check.sh) and, in CI, on the CUDA emulator (emulator/, scripts/gpu-emu.sh): a libcuda and a
// libcublas of the project's own that the unchanged test binaries load, which run the kernels' source on
// the host and check the host's use of the driver.
//
// A Device holds the GPU's primary context, current on one goroutine locked to its OS thread (CUDA's
// current context is per thread, and Go moves goroutines between threads): every driver call goes through
// that goroutine. Launches, products, copies within the device and frees are queued to it without waiting
// (the stream orders them anyway), so that a step's thousands of launches cost the host a channel send each;
// a call that waits (an allocation, a copy to or from the host) reports the first error of those queued
// before it. Matrix products go to cuBLAS, which is loaded with dlopen (libcublas.so.13, .12 or .11,
// whichever the machine has), so that one binary runs with the CUDA of the machine it lands on; float32
// products keep TF32 off unless asked (parity with the CPU's golden cases). Products in bfloat16
// (ops.BF16, mixed precision) call cublasGemmEx over operands rounded by the narrow_bf16 kernel, a trainable
// weight's rounded copy kept until the next update; the attention's products in such a run, whose operands
// no bfloat16 copy holds, run in TF32 (gemmIn). Uploads pass through pinned staging memory (a copy from
// pageable memory would drain the stream), and Usage counts the device's work: its peak memory, its
// products' operations by precision, the bytes uploaded, and each training step's time by events on the
// stream.
//
// The kernels: the optimizer step (the gradient norm, clipping and AdamW, with the moments on the device and
// copied back for checkpoints: AdamWStep, Moments), the widening of frozen 16-bit weights for their
// products, the gradient's sums over
// micro-batches, RMSNorm, SwiGLU and RoPE forward and backward, plain attention (causal or full) forward and
// backward, the cross-entropy's loss and gradient, float32 matrix products and a linear layer's backward
// pass, the vision tower's ops (LayerNorm, QuickGELU, the projector's GELU, row bias, residual add), the
// FlexAttention layer forward and backward in the union form (the HR tokens some row selected projected)
// or the dense form (every HR token projected: the official implementation's cost), each row's second
// softmax masked to its selection (flex_gpu.go), the assembly of the
// decoder's input and its gradients (bitwise the CPU's: each table row sums the rows it fed, in order, one
// thread per value) and the patch embedding, and the backward passes of a vision tower and a projector
// that train (LayerNorm, QuickGELU, GELU, a bias's column sums and the class and position embeddings'
// gradients, those as an assembly's tables').
//
// Graphs runs the model's graphs on a Device (model.Device): each operation of the graph hands its
// ops.Kernel to Graphs.Run, which runs the matching kernels over the values' device memory (graphops_gpu.go);
// the weights stay on the device across graphs, the other values come from the device's cache of blocks
// and go back to it as soon as no operation reads them (ops.PlanReleases, Graphs.Free and FreeSaved) or,
// those the caller reads after the run, when the graph closes; in mixed precision the activations the
// backward pass reads wait for it in bfloat16, in blocks of half their size (ops.PlanHolds, Graphs.Pack
// and Unpack; FlexAttention's HR features and keys in its saved state); Gorgonia's sums of gradient contributions
// reach the device through the values' tensor engine. The selection's map is computed here and only it
// comes down; the cells are chosen on the host and go back up. An operation without kernels (none of fit's graphs has one) runs on the CPU
// over copies, counted in Fallbacks; one that runs a graph of its own (ops.FuncArgs: a part of the frozen
// tower) runs it here, and Mark and ReleaseAfter give that graph's values back as soon as it ends.
// Training adds a run's gradients and
// AdamW moments beside its weights: the whole step stays on the device, and only the loss comes down until
// Sync copies the weights and moments back for a checkpoint. A step's gradients are the buffers its graph
// left them in, taken from the graph (one gradient per weight, as PyTorch's .grad). The ranks' GPUs of a run under MPI sum their
// gradients among themselves through NCCL (JoinGroup; libnccl.so.2, opened with dlopen as cuBLAS is: the
// library's C API is a handful of calls, and no maintained Go binding exists), or, where NCCL is missing,
// through the host.
package gpu

import "errors"

// ErrNoCUDA reports a build without the gpu tag.
var ErrNoCUDA = errors.New("gpu: this flextrain has no CUDA: build it with -tags gpu, for a machine with an NVIDIA driver")
