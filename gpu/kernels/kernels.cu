// flextrain's CUDA kernels, float32. scripts/gen-kernels.sh compiles this file into ../kernels.fatbin
// (sm_80 and sm_90 code, compute_80 PTX for newer chips) with -fmad=false, so that no multiply and add are
// fused behind the source's back: each kernel does the CPU op's arithmetic in its order, and the
// element-wise ones give its bits. The launch geometry and the index arithmetic of every kernel have a Go
// twin in ../geometry_test.go, tested against the CPU ops; the constants here must stay those of
// ../geometry.go. Every parameter is 8 bytes (a pointer, a long long or a double), as gorgonia.org/cu's
// Launch passes them: a float32 constant comes as the double of the same value and is narrowed back
// exactly.

#define BLOCK 256       // threads of an element-wise block (geometry.go: BlockSize)
#define ROW_THREADS 256 // threads of a row block, a power of two (geometry.go: RowThreads)
static_assert(BLOCK == ROW_THREADS, "sum_squares reduces an element-wise block with block_sum");

// Grid-stride loop: thread t of block b handles i = b·BLOCK + t, then every gridDim·BLOCK further on.
#define FOR_EACH(i, n) \
	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

// adamw updates w, m and v in place from the gradient g, as optim.AdamW's element loop does:
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  w −= lr·((m/(1−β1^t)) / (√(v/(1−β2^t)) + ε) + λ·w)
// with the step's constants in optim's order: β1, 1−β1, β2, 1−β2, 1−β1^t, 1−β2^t, ε, lr, λ (float32
// values). The square root is taken in double and rounded, as the CPU takes it.
extern "C" __global__ void adamw(float *w, const float *g, float *m, float *v, long long n, double b1_, double c1_,
		double b2_, double c2_, double d1_, double d2_, double eps_, double lr_, double wd_) {
	const float b1 = b1_, c1 = c1_, b2 = b2_, c2 = c2_, d1 = d1_, d2 = d2_, eps = eps_, lr = lr_, wd = wd_;
	FOR_EACH(i, n) {
		float gi = g[i];
		float mi = b1 * m[i] + c1 * gi;
		float vi = b2 * v[i] + c2 * (gi * gi);
		float mhat = mi / d1;
		float vhat = vi / d2;
		float denom = (float)sqrt((double)vhat) + eps;
		float wi = w[i];
		w[i] = wi - lr * (mhat / denom + wd * wi);
		m[i] = mi;
		v[i] = vi;
	}
}

// scale multiplies x by s in place (gradient clipping).
extern "C" __global__ void scale(float *x, long long n, double s_) {
	const float s = s_;
	FOR_EACH(i, n) { x[i] *= s; }
}

// block_sum reduces each thread's double in shared memory by halving (ROW_THREADS a power of two) and
// returns the block's total to every thread.
__device__ double block_sum(double v, double *shared) {
	shared[threadIdx.x] = v;
	__syncthreads();
	for (int half = ROW_THREADS / 2; half > 0; half /= 2) {
		if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
		__syncthreads();
	}
	double total = shared[0];
	__syncthreads();
	return total;
}

// sum_squares writes, for each block, the sum of x[i]² over the elements its threads visit (in double):
// partial[blockIdx.x]. The host adds the blocks' sums (the gradient norm's square).
extern "C" __global__ void sum_squares(double *partial, const float *x, long long n) {
	__shared__ double shared[ROW_THREADS];
	double s = 0;
	FOR_EACH(i, n) { s += (double)x[i] * (double)x[i]; }
	double total = block_sum(s, shared);
	if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// rmsnorm sets each row of y to x·s·w with s = 1/√(mean(x²) + eps), one block per row, the mean
// accumulated in double: ops.RMSNorm's forward.
extern "C" __global__ void rmsnorm(float *y, const float *x, const float *w, long long cols, double eps) {
	__shared__ double shared[ROW_THREADS];
	const float *xr = x + (long long)blockIdx.x * cols;
	float *yr = y + (long long)blockIdx.x * cols;
	double s = 0;
	for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += (double)xr[j] * (double)xr[j];
	float r = (float)(1 / sqrt(block_sum(s, shared) / cols + eps));
	for (long long j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = xr[j] * r * w[j];
}

// swiglu sets y = a·σ(a)·b element-wise: the MLP's gate (ops.SwiGLU's forward).
extern "C" __global__ void swiglu(float *y, const float *a, const float *b, long long n) {
	FOR_EACH(i, n) {
		float ai = a[i];
		y[i] = ai * (1.0f / (1.0f + expf(-ai))) * b[i];
	}
}
