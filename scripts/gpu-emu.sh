#!/bin/sh
# gpu-emu.sh build|test|run: the GPU path on the CUDA emulator (gpu/emulator), on a machine without a GPU.
#
#   scripts/gpu-emu.sh build   # .emu/ (git-ignored): the emulator's libcuda.so.1, libcublas.so.13 and
#                              # libnccl.so.2; the gpu, model and cmd/flextrain tests and flextrain built
#                              # with -tags gpu
#   scripts/gpu-emu.sh test    # build, then on the emulator: the gpu package's tests, the model's OnGPU
#                              # tests (the golden training case and finite differences) and flextrain fit
#                              # on the GPU against the CPU, resumed exactly (cmd/flextrain's TestFitOnGPU);
#                              # where Open MPI is installed, 2 ranks on 2 GPUs summing through NCCL
#                              # against 1 rank on the CPU (TestMPIOnGPUs); then the kernels' tests and the
#                              # golden case again with each block's threads run in the other order
#                              # (FLEXTRAIN_EMU_ORDER=reverse: threads that share values without a barrier
#                              # between give other results)
#   scripts/gpu-emu.sh run CMD # CMD with the emulator's libraries first on LD_LIBRARY_PATH
#                              # (scripts/gpu-emu.sh run .emu/flextrain fit --device cuda ...)
#
# The binaries are the ones a GPU machine runs: only the libraries they load differ. The emulator runs the
# kernels' source compiled for the host and cuBLAS's products by their documented layouts, and checks
# memory, launches and the stream's order (gpu/emulator/driver.cpp says what it checks and what it cannot).
set -eu
cd "$(dirname "$0")/.."
dir=.emu
case "${1:-}" in
build)
	eval "$(scripts/cuda-sdk.sh)"
	mkdir -p $dir
	go test -c -tags gpu -o $dir/gpu.test ./gpu
	go test -c -tags gpu -o $dir/model.test ./model
	go test -c -tags gpu -o $dir/cmd.test ./cmd/flextrain
	rm -f $dir/cmd-mpi.test
	if command -v mpirun >/dev/null && pkg-config --exists ompi-c 2>/dev/null; then
		go test -c -tags "gpu mpi" -o $dir/cmd-mpi.test ./cmd/flextrain
	fi
	go build -tags gpu -o $dir/flextrain ./cmd/flextrain
	cxx="g++ -std=c++17 -O2 -g -fPIC -ffp-contract=off -Wall -Wno-unused-function -Wno-sign-compare"
	sed -n 's/^extern "C" __global__ void \([a-z_0-9]*\)(.*/K(\1)/p' gpu/kernels/kernels.cu >$dir/kernels.inc
	$cxx -I$dir -Igpu/emulator/include -include gpu/emulator/shim.h -c gpu/emulator/kernels.cpp -o $dir/kernels.o
	$cxx $CGO_CFLAGS -c gpu/emulator/driver.cpp -o $dir/driver.o
	$cxx -c gpu/emulator/cublas.cpp -o $dir/cublas.o
	$cxx -c gpu/emulator/nccl.cpp -o $dir/nccl.o
	# every driver call the binaries import that driver.cpp does not carry out: a stub that says so
	nm -D --undefined-only $dir/gpu.test $dir/model.test $dir/flextrain | awk '$2 ~ /^cu/ {print $2}' | sort -u >$dir/imported
	nm -g --defined-only $dir/driver.o | awk '{print $3}' | sort -u >$dir/defined
	comm -23 $dir/imported $dir/defined |
		awk '{printf "int %s(void) { return emu_unsupported(\"%s\"); }\n", $1, $1}' >$dir/stubs.c
	sed -i '1i int emu_unsupported(const char *name);' $dir/stubs.c
	gcc -fPIC -c $dir/stubs.c -o $dir/stubs.o
	$cxx -shared -Wl,-soname,libcuda.so.1 -o $dir/libcuda.so.1 $dir/driver.o $dir/kernels.o $dir/stubs.o
	$cxx -shared -Wl,-soname,libcublas.so.13 -o $dir/libcublas.so.13 $dir/cublas.o -L$dir -l:libcuda.so.1
	$cxx -shared -Wl,-soname,libnccl.so.2 -o $dir/libnccl.so.2 $dir/nccl.o -L$dir -l:libcuda.so.1 -lrt
	;;
test)
	sh scripts/gpu-emu.sh build
	eval "$(scripts/cuda-sdk.sh)" # TestFitOnGPU builds flextrain with -tags gpu
	export LD_LIBRARY_PATH=$PWD/$dir
	$dir/gpu.test -test.count=1
	(cd model && ../$dir/model.test -test.count=1 -test.run 'OnGPU')
	(cd cmd/flextrain && ../../$dir/cmd.test -test.count=1 -test.run 'OnGPU')
	if [ -x $dir/cmd-mpi.test ]; then
		(cd cmd/flextrain && ../../$dir/cmd-mpi.test -test.count=1 -test.run 'MPIOnGPUs')
	fi
	export FLEXTRAIN_EMU_ORDER=reverse
	$dir/gpu.test -test.count=1 -test.run 'Device'
	(cd model && ../$dir/model.test -test.count=1 -test.run 'TestGraphOnGPU')
	;;
run)
	shift
	LD_LIBRARY_PATH=$PWD/$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec "$@"
	;;
*)
	echo "usage: scripts/gpu-emu.sh build|test|run CMD..." >&2
	exit 2
	;;
esac
