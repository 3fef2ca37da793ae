// driver.cpp: the emulator's libcuda.so.1, the CUDA driver API calls that flextrain's gpu build makes,
// carried out on the host.
//
// Why: no tool runs CUDA kernels on a machine without a GPU (no PTX emulator in Debian, on the Go module
// proxy or on npm), and a GPU is lent to few sessions. The emulator runs the unchanged test binaries and
// flextrain built with -tags gpu against this library and the emulator's cuBLAS, so that the host's part
// of the GPU path (buffers, launches and their arguments, copies, the stream's order, the gemm calls'
// layouts) and the kernels' source (compiled for the host by kernels.cpp) run on every CI machine. It says
// nothing of speed, of the GPU's own rounding (expf, fused multiply-adds, tensor-core products) or of
// races between threads of a block other than those the two orders below tell apart: the GPU alone shows
// them.
//
// What it checks beyond a GPU:
//   - with FLEXTRAIN_EMU_ORDER=reverse, a block's threads run in the other order between barriers, which
//     changes the results of a kernel whose threads share values without a barrier between;
//   - device memory is host memory filled with NaNs (0xFF bytes) when allocated, so that a value read before
//     it is written shows;
//   - 256 guard bytes follow each allocation; the kernels and products that write to an allocation are
//     checked not to have written past its end;
//   - each launch's pointer arguments point into device allocations; the grid and block are within the
//     GPU's limits; a block's threads reach the same barriers;
//   - copies and memsets stay within their allocations;
//   - a thread leaves the deepest 512 bytes of its 16 KiB fiber stack untouched (more would run past it);
//   - the stream runs its work only when the host waits for it (a synchronising call), the latest a GPU may:
//     pinned host memory read by an asynchronous copy must not change before the stream gets to it.
// A fault prints what happened and makes every later call fail, as a CUDA context does.
#include <cuda.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "emulator.h"
#include "kernel.h"

struct uint3 {
	unsigned x, y, z;
};
typedef uint3 dim3;
uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {

const size_t kGuard = 256;                 // guard bytes after each allocation
const unsigned char kGuardByte = 0xCD;     // their value
const size_t kStack = 16 << 10;            // a fiber's stack
const uint64_t kStackCanary = 0x5ca1ab1e5ca1ab1eull; // its deepest words' value until a thread reaches them
const int kStackCheck = 64;                // those words
const char *kName = "flextrain CUDA emulator";

std::recursive_mutex mu;       // one call at a time
CUresult sticky = CUDA_SUCCESS; // the fault every call returns once the device's work has faulted
std::map<uint64_t, size_t> device; // allocation base → bytes
std::map<uint64_t, size_t> pinned; // page-locked host memory: base → bytes
size_t used;
std::deque<std::function<void()>> stream; // queued work, in order

// devices is how many GPUs the emulator shows: FLEXTRAIN_EMU_DEVICES, 1 by default (each rank of an mpirun
// has its own emulator, and takes the GPU of its local rank). They share the one memory and stream.
int devices() {
	const char *s = std::getenv("FLEXTRAIN_EMU_DEVICES");
	int n = s ? std::atoi(s) : 1;
	return n > 0 ? n : 1;
}

bool validDevice(CUdevice d) { return d >= 0 && d < devices(); }

size_t capacity() {
	const char *s = std::getenv("FLEXTRAIN_EMU_MEMORY_MIB");
	return (s ? std::strtoull(s, nullptr, 10) : 16384) << 20;
}

// Stats counts what the host asked of the device, printed when the stream is destroyed with
// FLEXTRAIN_EMU_STATS=1: how often the host waited for queued work (each wait idles a GPU until the host
// queues more), the launches and library calls, and the copies each way.
struct Stats {
	long waits, launches, calls, up, down;
	size_t upBytes, downBytes;
} stats;

void printStats() {
	const char *s = std::getenv("FLEXTRAIN_EMU_STATS");
	if (s == nullptr || std::strcmp(s, "1") != 0) return;
	std::fprintf(stderr,
		"cuda emulator: %ld waits for the stream, %ld launches, %ld cuBLAS and NCCL calls, %ld copies up (%.1f MiB), "
		"%ld down (%.1f MiB)\n",
		stats.waits, stats.launches, stats.calls, stats.up, stats.upBytes / 1048576.0, stats.down,
		stats.downBytes / 1048576.0);
}

// flush runs the stream's queued work; after a fault, what is left is dropped.
void flush() {
	stats.waits += !stream.empty();
	while (!stream.empty()) {
		auto work = std::move(stream.front());
		stream.pop_front();
		if (sticky == CUDA_SUCCESS) work();
	}
}

// holder is the allocation that holds address p (p itself or up to its end), or device.end().
std::map<uint64_t, size_t>::iterator holder(uint64_t p) {
	auto it = device.upper_bound(p);
	if (it == device.begin()) return device.end();
	--it;
	return p <= it->first + it->second ? it : device.end();
}

bool isPinned(const void *p, size_t bytes) {
	uint64_t a = (uint64_t)p;
	auto it = pinned.upper_bound(a);
	if (it == pinned.begin()) return false;
	--it;
	return a + bytes <= it->first + it->second;
}

// enter begins an API call: the lock, and the fault if the device has one.
#define ENTER()                                      \
	std::lock_guard<std::recursive_mutex> lock(mu); \
	if (sticky != CUDA_SUCCESS) return sticky

// ---- fibers: a block's threads ----
//
// A fiber switch saves the callee-saved registers on the running stack and moves to the other's (System V
// x86-64; the floating-point control words are the thread's, which no kernel changes). ucontext's
// swapcontext would do as well, but it also saves the signal mask with a system call, which made it most of
// the emulator's time.

extern "C" void emu_switch(void **from, void *to);
asm(R"(
	.text
	.globl emu_switch
	.type emu_switch, @function
emu_switch:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.size emu_switch, .-emu_switch
)");

struct Fiber {
	void *sp;
	std::vector<uint64_t> stack;
	int state; // 0 runs, 1 waits at a barrier, 2 done
};

// The emulator runs one kernel at a time (under mu): its state is global.
void *scheduler;            // the scheduler's stack while a fiber runs
std::vector<Fiber> fibers;
int current;
int waiting, finished; // the block's fibers at the barrier, and done
bool direct;   // the block's threads run as plain calls: thread 0 met no barrier
bool diverged; // a thread met a barrier that others did not
const Kernel *kernel;
const uint64_t *kernelArgs;

void place(int t) {
	if (blockDim.y == 1 && blockDim.z == 1) {
		threadIdx = uint3{unsigned(t), 0, 0};
		return;
	}
	threadIdx = uint3{t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
}

[[noreturn]] void fiberMain() {
	kernel->call(kernelArgs);
	fibers[current].state = 2;
	finished++;
	void *dead;
	emu_switch(&dead, scheduler);
	__builtin_unreachable();
}

// start readies fiber t to run the kernel from its beginning: a stack that emu_switch's return enters
// fiberMain from, as a call would.
void start(int t) {
	Fiber &f = fibers[t];
	if (f.stack.empty()) f.stack.assign(kStack / 8, kStackCanary);
	uint64_t *top = f.stack.data() + f.stack.size(); // 16-byte aligned
	top[-1] = 0;                                     // fiberMain's return address: it never returns
	top[-2] = (uint64_t)&fiberMain;                  // emu_switch's
	for (int i = 3; i <= 8; i++) top[-i] = 0;        // rbp, rbx, r12 to r15
	f.sp = top - 8;
	f.state = 0;
}

void resume(int t) {
	current = t;
	place(t);
	fibers[t].state = 0;
	emu_switch(&scheduler, fibers[t].sp);
}

// reversed is whether a block's threads run last to first between barriers (FLEXTRAIN_EMU_ORDER=reverse):
// a kernel whose threads read what others of the block write, with no barrier between, then reads other
// values than in the first order, and its results change.
bool reversed() {
	static const bool r = [] {
		const char *s = std::getenv("FLEXTRAIN_EMU_ORDER");
		return s != nullptr && std::strcmp(s, "reverse") == 0;
	}();
	return r;
}

// runBlock runs the current block's n threads: the first as a fiber; if it finishes without meeting a
// barrier, the others as plain calls (a barrier one of them meets is a divergence); else every thread as
// a fiber, a round from barrier to barrier. It returns false when the threads' barriers diverged.
bool runBlock(int n) {
	if ((int)fibers.size() < n) fibers.resize(n); // between blocks: no fiber is suspended
	auto nth = [n](int i) { return reversed() ? n - 1 - i : i; };
	diverged = false;
	waiting = finished = 0;
	start(nth(0));
	resume(nth(0));
	if (fibers[nth(0)].state == 2) {
		direct = true;
		for (int i = 1; i < n; i++) {
			place(nth(i));
			kernel->call(kernelArgs);
		}
		direct = false;
		return !diverged;
	}
	for (int i = 1; i < n; i++) {
		start(nth(i));
		resume(nth(i));
	}
	while (waiting > 0) {
		if (finished > 0) return false;
		waiting = 0;
		for (int i = 0; i < n; i++) resume(nth(i));
	}
	return true;
}

// execute runs kernel k over the grid on the host, then checks the guards of the allocations it was given.
void execute(const Kernel *k, std::vector<uint64_t> args, dim3 grid, dim3 block) {
	kernel = k;
	kernelArgs = args.data();
	gridDim = grid;
	blockDim = block;
	int n = block.x * block.y * block.z;
	for (unsigned z = 0; z < grid.z; z++) {
		for (unsigned y = 0; y < grid.y; y++) {
			for (unsigned x = 0; x < grid.x; x++) {
				blockIdx = uint3{x, y, z};
				if (!runBlock(n)) {
					emu_fail("kernel %s: the threads of block (%u, %u, %u) did not all reach the same barriers", k->name, x, y, z);
					return;
				}
			}
		}
	}
	for (int i = 0; i < k->arity; i++) {
		if (k->pointers >> i & 1 && args[i]) emu_guard(args[i], k->name);
	}
	for (int t = 0; t < n && t < (int)fibers.size(); t++) {
		const std::vector<uint64_t> &st = fibers[t].stack;
		for (int w = 0; w < kStackCheck && !st.empty(); w++) {
			if (st[w] != kStackCanary) {
				emu_fail("kernel %s: a thread used nearly all of the emulator's %zu-byte fiber stack", k->name, kStack);
				return;
			}
		}
	}
}

struct Module {
	std::string image; // the fatbin's bytes, where kernel names are looked up
};

struct Event {
	bool recorded = false;
	double ms = 0;
};

double now() {
	return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int attribute(CUdevice_attribute a) {
	switch (a) {
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return 1024;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: return 1024;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return 1024;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return 64;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return 2147483647;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: return 65535;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return 65535;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return 49152;
	case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
	case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return 1;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return 8;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return 0;
	case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: return 1;
	default: return 0;
	}
}

} // namespace

// ---- what cublas.cpp uses ----

void emu_enqueue(std::function<void()> work) {
	std::lock_guard<std::recursive_mutex> lock(mu);
	stats.calls++;
	stream.push_back(std::move(work));
}

void emu_fail(const char *fmt, ...) {
	std::lock_guard<std::recursive_mutex> lock(mu);
	std::fprintf(stderr, "cuda emulator: ");
	va_list ap;
	va_start(ap, fmt);
	std::vfprintf(stderr, fmt, ap);
	va_end(ap);
	std::fprintf(stderr, "\n");
	if (sticky == CUDA_SUCCESS) sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
}

bool emu_inside(uint64_t p, size_t bytes) {
	std::lock_guard<std::recursive_mutex> lock(mu);
	auto it = holder(p);
	return it != device.end() && p + bytes <= it->first + it->second;
}

void emu_guard(uint64_t p, const char *what) {
	std::lock_guard<std::recursive_mutex> lock(mu);
	auto it = holder(p);
	if (it == device.end()) return;
	unsigned char *g = (unsigned char *)(it->first + it->second);
	for (size_t i = 0; i < kGuard; i++) {
		if (g[i] != kGuardByte) {
			emu_fail("%s wrote past the end of the %zu-byte allocation at %#llx (guard byte %zu)", what, it->second,
				(unsigned long long)it->first, i);
			std::memset(g, kGuardByte, kGuard);
			return;
		}
	}
}

// ---- the driver API ----

extern "C" {

CUresult cuInit(unsigned int flags) { return flags == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE; }

CUresult cuDriverGetVersion(int *v) {
	*v = 12000;
	return CUDA_SUCCESS;
}

CUresult cuGetErrorString(CUresult e, const char **s) {
	*s = e == CUDA_SUCCESS ? "no error" : "emulated CUDA error";
	return CUDA_SUCCESS;
}

CUresult cuGetErrorName(CUresult e, const char **s) { return cuGetErrorString(e, s); }

CUresult cuDeviceGetCount(int *n) {
	*n = devices();
	return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *d, int ordinal) {
	if (!validDevice(ordinal)) return CUDA_ERROR_INVALID_DEVICE;
	*d = ordinal;
	return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice d) {
	if (!validDevice(d)) return CUDA_ERROR_INVALID_DEVICE;
	std::snprintf(name, len, "%s", kName);
	return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem(size_t *bytes, CUdevice d) {
	if (!validDevice(d)) return CUDA_ERROR_INVALID_DEVICE;
	*bytes = capacity();
	return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d) {
	if (!validDevice(d)) return CUDA_ERROR_INVALID_DEVICE;
	*v = attribute(a);
	return CUDA_SUCCESS;
}

static int contextToken;

CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice d) {
	if (!validDevice(d)) return CUDA_ERROR_INVALID_DEVICE;
	*ctx = (CUcontext)&contextToken;
	return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease(CUdevice d) { return validDevice(d) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE; }

CUresult cuCtxSetCurrent(CUcontext ctx) {
	return ctx == nullptr || ctx == (CUcontext)&contextToken ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

CUresult cuCtxGetCurrent(CUcontext *ctx) {
	*ctx = (CUcontext)&contextToken;
	return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void) {
	ENTER();
	flush();
	return sticky;
}

CUresult cuModuleLoadData(CUmodule *m, const void *image) {
	ENTER();
	const unsigned char *b = (const unsigned char *)image;
	if (b == nullptr || !(b[0] == 0x50 && b[1] == 0xed && b[2] == 0x55 && b[3] == 0xba)) {
		return CUDA_ERROR_INVALID_IMAGE; // not a fatbin
	}
	uint64_t size = 0;
	std::memcpy(&size, b + 8, 8); // the fatbin header's payload size after its 16 bytes
	*m = (CUmodule) new Module{std::string((const char *)b, 16 + size)};
	return CUDA_SUCCESS;
}

CUresult cuModuleUnload(CUmodule m) {
	delete (Module *)m;
	return CUDA_SUCCESS;
}

// cuModuleGetFunction finds the kernel in the emulator's table and, as the driver would, in the module.
CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
	ENTER();
	const Kernel *k = emu_kernel(name);
	if (k == nullptr || ((Module *)m)->image.find(name) == std::string::npos) return CUDA_ERROR_NOT_FOUND;
	*f = (CUfunction)k;
	return CUDA_SUCCESS;
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
	unsigned shared, CUstream, void **params, void **extra) {
	ENTER();
	const Kernel *k = (const Kernel *)f;
	if (k == nullptr) return CUDA_ERROR_INVALID_HANDLE;
	if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || gy > 65535 || gz > 65535 || bx > 1024 ||
		by > 1024 || bz > 64 || (uint64_t)bx * by * bz > 1024 || gx > 2147483647u) {
		std::fprintf(stderr, "cuda emulator: kernel %s: grid (%u, %u, %u), block (%u, %u, %u)\n", k->name, gx, gy, gz,
			bx, by, bz);
		return CUDA_ERROR_INVALID_VALUE;
	}
	if (shared > 49152 || extra != nullptr || (k->arity > 0 && params == nullptr)) return CUDA_ERROR_INVALID_VALUE;
	std::vector<uint64_t> args(k->arity);
	for (int i = 0; i < k->arity; i++) {
		std::memcpy(&args[i], params[i], 8);
		if (k->pointers >> i & 1 && args[i] != 0 && holder(args[i]) == device.end()) {
			emu_fail("kernel %s: argument %d (%#llx) is not device memory", k->name, i, (unsigned long long)args[i]);
			return CUDA_ERROR_INVALID_VALUE;
		}
	}
	stats.launches++;
	stream.push_back([=] { execute(k, args, dim3{gx, gy, gz}, dim3{bx, by, bz}); });
	return CUDA_SUCCESS;
}

CUresult cuMemGetInfo(size_t *free, size_t *total) {
	ENTER();
	*total = capacity();
	*free = *total - used;
	return CUDA_SUCCESS;
}

CUresult cuMemAlloc(CUdeviceptr *p, size_t bytes) {
	ENTER();
	if (bytes == 0) return CUDA_ERROR_INVALID_VALUE;
	if (used + bytes > capacity()) return CUDA_ERROR_OUT_OF_MEMORY;
	size_t whole = (bytes + kGuard + 255) / 256 * 256;
	unsigned char *b = (unsigned char *)std::aligned_alloc(256, whole);
	if (b == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
	std::memset(b, 0xFF, bytes); // NaNs: a value read before it is written shows
	std::memset(b + bytes, kGuardByte, kGuard);
	device[(uint64_t)b] = bytes;
	used += bytes;
	*p = (CUdeviceptr)b;
	return CUDA_SUCCESS;
}

CUresult cuMemFree(CUdeviceptr p) {
	ENTER();
	flush(); // as the driver does, the device's work is done before its memory goes
	auto it = device.find(p);
	if (it == device.end()) return CUDA_ERROR_INVALID_VALUE;
	emu_guard(p, "the device's work");
	used -= it->second;
	device.erase(it);
	std::free((void *)p);
	return sticky;
}

CUresult cuMemAllocHost(void **p, size_t bytes) {
	ENTER();
	*p = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
	if (*p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
	pinned[(uint64_t)*p] = bytes;
	return CUDA_SUCCESS;
}

CUresult cuMemFreeHost(void *p) {
	ENTER();
	flush();
	if (pinned.erase((uint64_t)p) == 0) return CUDA_ERROR_INVALID_VALUE;
	std::free(p);
	return CUDA_SUCCESS;
}

static CUresult within(CUdeviceptr p, size_t bytes, const char *call) {
	if (emu_inside(p, bytes)) return CUDA_SUCCESS;
	std::fprintf(stderr, "cuda emulator: %s of %zu bytes at %#llx: outside device memory\n", call, bytes,
		(unsigned long long)p);
	return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t bytes, CUstream) {
	ENTER();
	if (CUresult r = within(dst, bytes, "cuMemcpyHtoDAsync")) return r;
	stats.up++, stats.upBytes += bytes;
	if (isPinned(src, bytes)) { // an asynchronous copy: the host memory is read when the stream gets to it
		stream.push_back([=] { std::memcpy((void *)dst, src, bytes); });
		return CUDA_SUCCESS;
	}
	flush(); // from pageable memory the driver waits for the stream and copies before it returns
	std::memcpy((void *)dst, src, bytes);
	return sticky;
}

CUresult cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t bytes) {
	ENTER();
	if (CUresult r = cuMemcpyHtoDAsync(dst, src, bytes, nullptr)) return r;
	flush();
	return sticky;
}

CUresult cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t bytes, CUstream) {
	ENTER();
	if (CUresult r = within(src, bytes, "cuMemcpyDtoHAsync")) return r;
	stats.down++, stats.downBytes += bytes;
	if (isPinned(dst, bytes)) {
		stream.push_back([=] { std::memcpy(dst, (const void *)src, bytes); });
		return CUDA_SUCCESS;
	}
	flush();
	if (sticky == CUDA_SUCCESS) std::memcpy(dst, (const void *)src, bytes);
	return sticky;
}

CUresult cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t bytes) {
	ENTER();
	if (CUresult r = cuMemcpyDtoHAsync(dst, src, bytes, nullptr)) return r;
	flush();
	return sticky;
}

CUresult cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream) {
	ENTER();
	if (CUresult r = within(dst, bytes, "cuMemcpyDtoDAsync")) return r;
	if (CUresult r = within(src, bytes, "cuMemcpyDtoDAsync")) return r;
	stream.push_back([=] { std::memmove((void *)dst, (const void *)src, bytes); });
	return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
	ENTER();
	if (CUresult r = cuMemcpyDtoDAsync(dst, src, bytes, nullptr)) return r;
	flush();
	return sticky;
}

CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, CUstream) {
	ENTER();
	if (dst % 4 != 0) return CUDA_ERROR_INVALID_VALUE;
	if (CUresult r = within(dst, 4 * n, "cuMemsetD32Async")) return r;
	stream.push_back([=] {
		unsigned *p = (unsigned *)dst;
		for (size_t i = 0; i < n; i++) p[i] = v;
	});
	return CUDA_SUCCESS;
}

CUresult cuMemsetD32(CUdeviceptr dst, unsigned int v, size_t n) {
	ENTER();
	if (CUresult r = cuMemsetD32Async(dst, v, n, nullptr)) return r;
	flush();
	return sticky;
}

static int streamToken;

CUresult cuStreamCreate(CUstream *s, unsigned int) {
	*s = (CUstream)&streamToken;
	return CUDA_SUCCESS;
}

CUresult cuStreamDestroy(CUstream) {
	ENTER();
	flush();
	printStats();
	return sticky;
}

CUresult cuStreamSynchronize(CUstream) {
	ENTER();
	flush();
	return sticky;
}

CUresult cuStreamQuery(CUstream) {
	ENTER();
	flush();
	return sticky;
}

CUresult cuEventCreate(CUevent *e, unsigned int) {
	*e = (CUevent) new Event;
	return CUDA_SUCCESS;
}

CUresult cuEventDestroy(CUevent e) {
	ENTER();
	flush();
	delete (Event *)e;
	return CUDA_SUCCESS;
}

CUresult cuEventRecord(CUevent e, CUstream) {
	ENTER();
	Event *ev = (Event *)e;
	ev->recorded = false;
	stream.push_back([=] {
		ev->ms = now();
		ev->recorded = true;
	});
	return CUDA_SUCCESS;
}

CUresult cuEventSynchronize(CUevent) {
	ENTER();
	flush();
	return sticky;
}

CUresult cuEventQuery(CUevent e) {
	ENTER();
	return ((Event *)e)->recorded ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

CUresult cuEventElapsedTime(float *ms, CUevent start, CUevent end) {
	ENTER();
	Event *a = (Event *)start, *b = (Event *)end;
	if (!a->recorded || !b->recorded) return CUDA_ERROR_NOT_READY;
	*ms = (float)(b->ms - a->ms);
	return CUDA_SUCCESS;
}

// emu_unsupported is what the driver calls the emulator does not carry out return (stubs.c).
int emu_unsupported(const char *name) {
	std::fprintf(stderr, "cuda emulator: %s is not emulated\n", name);
	return CUDA_ERROR_NOT_SUPPORTED;
}

} // extern "C"

void __syncthreads() {
	if (direct) { // thread 0 of this block finished without this barrier
		diverged = true;
		return;
	}
	fibers[current].state = 1;
	waiting++;
	emu_switch(&fibers[current].sp, scheduler);
}
