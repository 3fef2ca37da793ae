// nccl.cpp: the emulator's libnccl.so.2, the NCCL calls flextrain makes (gpu/nccl_gpu.go), for ranks that are
// processes of one machine, each with its emulated GPU. A group's identity names a POSIX shared memory
// segment; an all-reduce is queued on the rank's stream like NCCL's kernel, and when the stream runs it,
// every rank copies a chunk of its values into its slot, waits for the others, and adds the slots in rank
// order into its own values (the same sums, bit for bit, on every rank), chunk by chunk. A rank that waits
// more than a minute for the others fails the call instead of hanging.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "emulator.h"

namespace {

enum Result { kSuccess = 0, kSystemError = 2, kInvalidArgument = 4, kInvalidUsage = 5 };
enum { kFloat32 = 7, kSum = 0 };
const size_t kChunk = 1 << 18; // float32 values per rank per round
const int kMaxRanks = 64;
const char kMagic[] = "flextrain-emu-nccl";

// Shared is the segment the ranks of a group map: a barrier, then a slot of kChunk values per rank.
struct Shared {
	std::atomic<int> arrived;
	std::atomic<int> generation;
	float slots[];
};

struct Comm {
	Shared *shared;
	size_t bytes;
	int rank, ranks;
};

size_t segmentBytes(int ranks) { return sizeof(Shared) + size_t(ranks) * kChunk * sizeof(float); }

std::string segmentName(const char *id) {
	char name[64];
	uint64_t key;
	std::memcpy(&key, id + sizeof kMagic, 8);
	std::snprintf(name, sizeof name, "/flextrain-nccl-%016llx", (unsigned long long)key);
	return name;
}

// barrier waits until every rank of c has arrived (a generation count, so that it can be used again); false
// after a minute without them.
bool barrier(Comm *c) {
	Shared *s = c->shared;
	int gen = s->generation.load();
	if (s->arrived.fetch_add(1) + 1 == c->ranks) {
		s->arrived.store(0);
		s->generation.fetch_add(1);
		return true;
	}
	auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
	while (s->generation.load() == gen) {
		if (std::chrono::steady_clock::now() > deadline) return false;
		sched_yield();
	}
	return true;
}

// reduce sums count values at buf over c's ranks, in place (the stream's work).
void reduce(Comm *c, float *buf, size_t count) {
	for (size_t off = 0; off < count; off += kChunk) {
		size_t n = std::min(kChunk, count - off);
		std::memcpy(c->shared->slots + size_t(c->rank) * kChunk, buf + off, n * sizeof(float));
		bool ok = barrier(c);
		for (size_t i = 0; ok && i < n; i++) {
			float sum = 0;
			for (int r = 0; r < c->ranks; r++) sum += c->shared->slots[size_t(r) * kChunk + i];
			buf[off + i] = sum;
		}
		if (!ok || !barrier(c)) { // the second: every rank has read the slots before the next chunk's copy
			emu_fail("ncclAllReduce: rank %d of %d: the other ranks did not join the sum within a minute", c->rank,
				c->ranks);
			return;
		}
	}
}

} // namespace

extern "C" {

struct ncclUniqueId {
	char internal[128];
};

int ncclGetUniqueId(ncclUniqueId *id) {
	std::memset(id->internal, 0, sizeof id->internal);
	std::memcpy(id->internal, kMagic, sizeof kMagic);
	uint64_t key = std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32) ^ uint64_t(getpid());
	std::memcpy(id->internal + sizeof kMagic, &key, 8);
	return kSuccess;
}

int ncclCommInitRank(void **comm, int ranks, ncclUniqueId id, int rank) {
	if (std::memcmp(id.internal, kMagic, sizeof kMagic) != 0) return kInvalidArgument;
	if (ranks < 1 || ranks > kMaxRanks || rank < 0 || rank >= ranks) return kInvalidArgument;
	std::string name = segmentName(id.internal);
	int fd = shm_open(name.c_str(), O_CREAT | O_RDWR, 0600);
	if (fd < 0) return kSystemError;
	size_t bytes = segmentBytes(ranks);
	void *p = ftruncate(fd, bytes) == 0 ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
	close(fd);
	if (p == MAP_FAILED) return kSystemError;
	Comm *c = new Comm{(Shared *)p, bytes, rank, ranks}; // a new segment is zeros: a fresh barrier
	bool joined = barrier(c);
	if (rank == 0) shm_unlink(name.c_str()); // every rank has it mapped, or has given up
	if (!joined) {
		std::fprintf(stderr, "nccl emulator: rank %d of %d: the other ranks did not join within a minute\n", rank, ranks);
		munmap(p, bytes);
		delete c;
		return kSystemError;
	}
	*comm = c;
	return kSuccess;
}

int ncclAllReduce(const void *send, void *recv, size_t count, int type, int op, void *comm, void *) {
	Comm *c = (Comm *)comm;
	if (c == nullptr || type != kFloat32 || op != kSum) return kInvalidArgument;
	if (send != recv) return kInvalidUsage; // flextrain sums in place; the emulator only that
	if (count == 0) return kSuccess;
	if (!emu_inside((uint64_t)recv, count * sizeof(float))) {
		emu_fail("ncclAllReduce of %zu values at %p: outside device memory", count, recv);
		return kSuccess;
	}
	emu_enqueue([=] { reduce(c, (float *)recv, count); });
	return kSuccess;
}

int ncclGroupStart(void) { return kSuccess; }

int ncclGroupEnd(void) { return kSuccess; }

int ncclCommDestroy(void *comm) {
	Comm *c = (Comm *)comm;
	if (c == nullptr) return kInvalidArgument;
	munmap(c->shared, c->bytes);
	delete c;
	return kSuccess;
}

const char *ncclGetErrorString(int r) {
	switch (r) {
	case kSuccess: return "no error";
	case kSystemError: return "system error (emulated NCCL)";
	case kInvalidArgument: return "invalid argument (emulated NCCL)";
	case kInvalidUsage: return "invalid usage (emulated NCCL)";
	default: return "emulated NCCL error";
	}
}

} // extern "C"
