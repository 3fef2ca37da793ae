#!/bin/sh
# cuda-sdk.sh [DIR]: the CUDA toolkit that the gpu build needs on a machine without a GPU, unpacked from
# Debian's non-free packages (nvidia-cuda-dev, nvidia-cuda-toolkit, libnvvm4: CUDA 11.8) into DIR (default
# ~/.cache/flextrain-cuda-sdk) without installing them: the headers and link stubs that cgo needs to compile
# and link `-tags gpu` (gorgonia.org/cu links -lcuda), and nvcc and ptxas for the kernels. It prints the
# environment to use:
#
#   eval "$(scripts/cuda-sdk.sh)"
#   go build -tags gpu ./...        # compiles and links; running needs a GPU and its driver
#   go generate ./gpu               # scripts/gen-kernels.sh: kernels.fatbin and kernels.ptx
#
# The first call downloads about 1 GB of packages (half a minute here); later calls only print. Adding
# Debian's non-free component to apt's sources needs root (sudo is used when not root).
set -eu
DIR=$(realpath -m "${1:-$HOME/.cache/flextrain-cuda-sdk}")
if [ ! -f "$DIR/.complete" ]; then
	mkdir -p "$DIR"
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	if ! apt-cache policy nvidia-cuda-dev 2>/dev/null | grep -q 'Candidate: [0-9]'; then
		# Debian keeps the CUDA packages in its contrib and non-free components: add them for this release.
		. /etc/os-release
		mirror=$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
		printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"${mirror:-http://deb.debian.org/debian}" "$VERSION_CODENAME" "$VERSION_CODENAME" |
			$sudo tee /etc/apt/sources.list.d/flextrain-cuda.sources >/dev/null
		$sudo apt-get update -qq
	fi
	debs=$(mktemp -d)
	chmod 777 "$debs" # apt downloads as its own user where it can
	(cd "$debs" && apt-get download -qq nvidia-cuda-dev nvidia-cuda-toolkit libnvvm4 2>/dev/null)
	dpkg-deb --fsys-tarfile "$debs"/nvidia-cuda-dev_*.deb | (cd "$DIR" && tar -x ./usr/include ./usr/lib/x86_64-linux-gnu/stubs)
	dpkg -x "$debs"/nvidia-cuda-toolkit_*.deb "$DIR/toolkit"
	dpkg -x "$debs"/libnvvm4_*.deb "$DIR/toolkit"
	rm -rf "$debs"
	touch "$DIR/.complete"
fi
bin=$DIR/toolkit/usr/lib/nvidia-cuda-toolkit/bin
# nvcc reads nvcc.profile beside it: where cicc, libdevice, ptxas and the headers are in this unpacked tree.
printf 'NVVMIR_LIBRARY_DIR = $(_HERE_)/../libdevice\nPATH += $(_HERE_):%s/toolkit/usr/bin:\nINCLUDES += "-I%s/usr/include" $(_SPACE_)\n' \
	"$DIR" "$DIR" >"$bin/nvcc.profile"
libs=$DIR/toolkit/usr/lib/x86_64-linux-gnu
echo "export CGO_CFLAGS=-I$DIR/usr/include CGO_LDFLAGS=-L$DIR/usr/lib/x86_64-linux-gnu/stubs"
echo "export CUDA_SDK_NVCC='env LD_LIBRARY_PATH=$libs $bin/nvcc -ccbin /usr/bin/gcc -allow-unsupported-compiler'"
echo "export CUDA_SDK_PTXAS='env LD_LIBRARY_PATH=$libs $DIR/toolkit/usr/bin/ptxas'"
