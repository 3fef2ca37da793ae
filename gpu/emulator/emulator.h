// emulator.h: what the emulator's cuBLAS (cublas.cpp) asks of its driver (driver.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

// emu_enqueue puts work on the device's one stream: it runs, in order, when the host next waits for the
// stream (a synchronising call), which is the latest a GPU may run it.
void emu_enqueue(std::function<void()> work);

// emu_fail reports a fault of the device's work (what a GPU reports as an illegal address or a failed
// launch): the message goes to standard error, and every later driver call returns the error, as a
// CUDA context does after a fault.
void emu_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// emu_inside is whether [p, p+bytes) lies within one device allocation.
bool emu_inside(uint64_t p, size_t bytes);

// emu_guard checks the guard bytes after the allocation that holds p, naming what wrote past its end.
void emu_guard(uint64_t p, const char *what);
