// flextrain's CUDA kernels, float32. scripts/gen-kernels.sh compiles this file into ../kernels.fatbin
// (sm_80 and sm_90 code, compute_80 PTX for newer chips) with -fmad=false, so that no multiply and add are
// fused behind the source's back: each kernel does the CPU op's arithmetic in its order, and the
// element-wise ones give its bits. The launch geometry and the index arithmetic of every kernel have a Go
// twin in ../geometry_test.go, tested against the CPU ops; the constants here must stay those of
// ../geometry.go. Every parameter is 8 bytes (a pointer, a long long or a double), as gorgonia.org/cu's
// Launch passes them: a float32 constant comes as the double of the same value and is narrowed back
// exactly.

#include <cuda_fp16.h>

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

// swiglu_grad sets the gradients of SwiGLU's inputs from the output's g: dgate = g·b·σ(a)·(1 + a·(1 − σ(a))),
// dup = g·a·σ(a) (ops.SwiGLU's backward).
extern "C" __global__ void swiglu_grad(float *dgate, float *dup, const float *a, const float *b, const float *g, long long n) {
	FOR_EACH(i, n) {
		float x = a[i], s = 1.0f / (1.0f + expf(-x));
		dgate[i] = g[i] * b[i] * s * (1 + x * (1 - s));
		dup[i] = g[i] * x * s;
	}
}

// rms_rows sets s[r] = 1/√(mean(x_r²) + eps) for each row r (a block per row), in double: what the RMSNorm
// weight's gradient scales each row by.
extern "C" __global__ void rms_rows(double *s, const float *x, long long cols, double eps) {
	__shared__ double shared[ROW_THREADS];
	const float *xr = x + (long long)blockIdx.x * cols;
	double q = 0;
	for (long long j = threadIdx.x; j < cols; j += blockDim.x) q += (double)xr[j] * (double)xr[j];
	double total = block_sum(q, shared);
	if (threadIdx.x == 0) s[blockIdx.x] = 1 / sqrt(total / cols + eps);
}

// rmsnorm_grad_x sets dx = s·g·w − (s³/D)·(Σ g·w·x)·x for each row (a block per row), in double and rounded
// once, as ops.RMSNorm's backward does.
extern "C" __global__ void rmsnorm_grad_x(float *dx, const float *x, const float *w, const float *g, long long cols, double eps) {
	__shared__ double shared[ROW_THREADS];
	long long off = (long long)blockIdx.x * cols;
	double q = 0, dot = 0;
	for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
		double xj = x[off + j];
		q += xj * xj;
		dot += (double)g[off + j] * (double)w[j] * xj;
	}
	double s = 1 / sqrt(block_sum(q, shared) / cols + eps);
	double c = s * s * s / cols * block_sum(dot, shared);
	for (long long j = threadIdx.x; j < cols; j += blockDim.x)
		dx[off + j] = (float)(s * (double)g[off + j] * (double)w[j] - c * (double)x[off + j]);
}

// rmsnorm_grad_w sets dw[j] = Σ_r g[r][j]·x[r][j]·s[r], a thread per column adding the rows in order, in
// double: the CPU's order, and so its bits.
extern "C" __global__ void rmsnorm_grad_w(float *dw, const float *x, const float *g, const double *s, long long rows, long long cols) {
	FOR_EACH(j, cols) {
		double acc = 0;
		for (long long r = 0; r < rows; r++) acc += (double)g[r * cols + j] * (double)x[r * cols + j] * s[r];
		dw[j] = (float)acc;
	}
}

// rope rotates every head of x [rows, width] (heads of dh values): y = x·cos + rot(x)·sin with
// rot(x) = cat(−x₂, x₁), or with transpose the adjoint (the backward pass); row r reads row r mod period of
// the tables [period, dh]. A thread per pair (x₁[i], x₂[i]), as ops.RopeRow computes it.
extern "C" __global__ void rope(float *y, const float *x, const float *cos, const float *sin, long long rows,
		long long width, long long dh, long long period, long long transpose) {
	long long half = dh / 2, perRow = width / 2;
	FOR_EACH(p, rows * perRow) {
		long long r = p / perRow, q = p % perRow, i = q % half;
		long long at = r * width + (q / half) * dh, t = (r % period) * dh;
		float a = x[at + i], b = x[at + half + i];
		if (transpose) {
			y[at + i] = a * cos[t + i] + b * sin[t + half + i];
			y[at + half + i] = b * cos[t + half + i] - a * sin[t + i];
		} else {
			y[at + i] = a * cos[t + i] - b * sin[t + i];
			y[at + half + i] = b * cos[t + half + i] + a * sin[t + half + i];
		}
	}
}

// block_max is block_sum's maximum.
__device__ double block_max(double v, double *shared) {
	shared[threadIdx.x] = v;
	__syncthreads();
	for (int half = ROW_THREADS / 2; half > 0; half /= 2) {
		if (threadIdx.x < half) shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + half]);
		__syncthreads();
	}
	double m = shared[0];
	__syncthreads();
	return m;
}

// xent_lse sets lse[r] = m + log Σ exp(x − m), m the row's maximum, and picked[r] = x[r][target], for each
// row of logits [rows, V] with a target (a block per row, in double); rows without one (target < 0) are left
// alone. The loss is then Σ (lse − picked)/n, added on the host in row order as the CPU adds it.
extern "C" __global__ void xent_lse(double *lse, double *picked, const float *x, const long long *targets, long long V) {
	__shared__ double shared[ROW_THREADS];
	if (targets[blockIdx.x] < 0) return; // the whole block returns: no thread waits at a barrier
	const float *row = x + (long long)blockIdx.x * V;
	double m = -INFINITY;
	for (long long j = threadIdx.x; j < V; j += blockDim.x) m = fmax(m, (double)row[j]);
	m = block_max(m, shared);
	double s = 0;
	for (long long j = threadIdx.x; j < V; j += blockDim.x) s += exp((double)row[j] - m);
	s = block_sum(s, shared);
	if (threadIdx.x == 0) {
		lse[blockIdx.x] = m + log(s);
		picked[blockIdx.x] = row[targets[blockIdx.x]];
	}
}

// xent_grad sets the logits' gradient of the mean cross-entropy over n supervised rows, times the upstream
// g: (softmax − onehot(target))·g/n, each value rounded once; rows without a target get zeros.
extern "C" __global__ void xent_grad(float *d, const float *x, const double *lse, const long long *targets, long long V,
		long long n, double g) {
	long long r = blockIdx.x, t = targets[r];
	for (long long j = threadIdx.x; j < V; j += blockDim.x) {
		float v = 0;
		if (t >= 0) v = (float)(exp((double)x[r * V + j] - lse[r]) / n * g);
		if (j == t) v -= (float)(g / n);
		d[r * V + j] = v;
	}
}

// row_softmax turns one row of scores into probabilities over its first keys entries, zeros past them up
// to n, by the threads of one block. As the CPU's softmax: e = exp(s − max) in float32, their sum in
// double, each e times the float32 of its inverse.
__device__ void row_softmax(float *row, long long keys, long long n, double *shared) {
	double m = -INFINITY;
	for (long long j = threadIdx.x; j < keys; j += blockDim.x) m = fmax(m, (double)row[j]);
	m = block_max(m, shared);
	double s = 0;
	for (long long j = threadIdx.x; j < keys; j += blockDim.x) {
		float e = expf(row[j] - (float)m);
		row[j] = e;
		s += e;
	}
	float inv = (float)(1 / block_sum(s, shared));
	for (long long j = threadIdx.x; j < n; j += blockDim.x) row[j] = j < keys ? row[j] * inv : 0;
}

// attn_softmax turns the scores of one sample's heads, S [H, N, N] (row r of head h at (h·N + r)·N, its
// first keys columns set), into the probabilities P = softmax over the keys each row sees: the first
// min(r+1, L) (causal) or L (full), zeros past them; a block per row.
extern "C" __global__ void attn_softmax(float *p, long long n, long long l, long long full) {
	__shared__ double shared[ROW_THREADS];
	long long r = blockIdx.x % n;
	row_softmax(p + (long long)blockIdx.x * n, full ? l : min(r + 1, l), n, shared);
}

// rows_softmax is attn_softmax for the selection's HR rows: S [H, R, l] holds, for each head, the scores of
// R rows of a sample, row i seeing its first keys[i] keys; a block per row of S.
extern "C" __global__ void rows_softmax(float *p, const long long *keys, long long r, long long l) {
	__shared__ double shared[ROW_THREADS];
	row_softmax(p + (long long)blockIdx.x * l, keys[blockIdx.x % r], l, shared);
}

// image_attention sets att [R, n] to each HR row's attention on the sample's n image tokens (from key i0 on),
// summed over the heads in order in double: the selection's map (ops.imageAttention); 0 past the row's keys.
extern "C" __global__ void image_attention(double *att, const float *p, const long long *keys, long long heads,
		long long r, long long l, long long i0, long long n) {
	FOR_EACH(e, r * n) {
		long long i = e / n, t = e % n;
		double s = 0;
		if (i0 + t < keys[i])
			for (long long h = 0; h < heads; h++) s += (double)p[(h * r + i) * l + i0 + t];
		att[e] = s;
	}
}

// attn_softmax_back turns dP [H, N, N] (row stride N, first l columns) into dS = P ⊙ (dP − Σ_j P·dP) in place,
// the row's sum in double and rounded once (the CPU's softmaxBackward); a block per row.
extern "C" __global__ void attn_softmax_back(float *dp, const float *p, long long n, long long l) {
	__shared__ double shared[ROW_THREADS];
	long long off = (long long)blockIdx.x * n;
	double dot = 0;
	for (long long j = threadIdx.x; j < l; j += blockDim.x) dot += (double)p[off + j] * (double)dp[off + j];
	float rho = (float)block_sum(dot, shared);
	for (long long j = threadIdx.x; j < l; j += blockDim.x) dp[off + j] = p[off + j] * (dp[off + j] - rho);
}

// row_stats sets *mean and *inv to the mean of the row xr [cols] and 1/√(var + eps), in double (two halving
// sums over the block's threads): CLIP's LayerNorm's statistics, as the CPU takes them.
__device__ void row_stats(const float *xr, long long cols, double eps, double *shared, double *mean, double *inv) {
	double s = 0;
	for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += (double)xr[j];
	double m = block_sum(s, shared) / cols, q = 0;
	for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
		double d = (double)xr[j] - m;
		q += d * d;
	}
	*mean = m;
	*inv = 1 / sqrt(block_sum(q, shared) / cols + eps);
}

// layernorm sets each row of y to (x − mean)/√(var + eps)·w + b, CLIP's LayerNorm (a block per row), the
// mean and variance in double as the CPU takes them, the normalised value rounded to float32 before w and b.
extern "C" __global__ void layernorm(float *y, const float *x, const float *w, const float *b, long long cols, double eps) {
	__shared__ double shared[ROW_THREADS];
	long long off = (long long)blockIdx.x * cols;
	double mean, inv;
	row_stats(x + off, cols, eps, shared, &mean, &inv);
	for (long long j = threadIdx.x; j < cols; j += blockDim.x)
		y[off + j] = (float)(((double)x[off + j] - mean) * inv) * w[j] + b[j];
}

// quick_gelu sets x = x·σ(1.702·x) in place, CLIP's activation.
extern "C" __global__ void quick_gelu(float *x, long long n) {
	FOR_EACH(i, n) {
		float v = x[i];
		x[i] = v * (1.0f / (1.0f + expf(-(1.702f * v))));
	}
}

// gelu sets x = x·Φ(x) in place, the exact (erf) GELU of the projector, in double and rounded once.
extern "C" __global__ void gelu(float *x, long long n) {
	FOR_EACH(i, n) {
		double v = x[i];
		x[i] = (float)(0.5 * v * (1 + erf(v / 1.4142135623730951)));
	}
}

// layernorm_grad_x sets dx = inv·(h − mean(h) − x̂·mean(h·x̂)) for each row (a block per row), with
// x̂ = (x − mean)·inv and h = g·w: ops.LayerNormOp's backward for x, in double as the CPU takes it (four
// halving sums: the mean, the variance, mean(h), mean(h·x̂)).
extern "C" __global__ void layernorm_grad_x(float *dx, const float *x, const float *w, const float *g, long long cols, double eps) {
	__shared__ double shared[ROW_THREADS];
	long long off = (long long)blockIdx.x * cols;
	double mean, inv, mh = 0, mhx = 0;
	row_stats(x + off, cols, eps, shared, &mean, &inv);
	for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
		double h = (double)g[off + j] * (double)w[j];
		mh += h;
		mhx += h * ((double)x[off + j] - mean) * inv;
	}
	mh = block_sum(mh, shared) / cols;
	mhx = block_sum(mhx, shared) / cols;
	for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
		double xh = ((double)x[off + j] - mean) * inv;
		dx[off + j] = (float)(inv * ((double)g[off + j] * (double)w[j] - mh - xh * mhx));
	}
}

// ln_rows sets stats[2r] and stats[2r+1] to the mean and 1/√(var + eps) of row r (a block per row), in
// double: what the LayerNorm weight's gradient normalises each row with.
extern "C" __global__ void ln_rows(double *stats, const float *x, long long cols, double eps) {
	__shared__ double shared[ROW_THREADS];
	double mean, inv;
	row_stats(x + (long long)blockIdx.x * cols, cols, eps, shared, &mean, &inv);
	if (threadIdx.x == 0) {
		stats[2 * blockIdx.x] = mean;
		stats[2 * blockIdx.x + 1] = inv;
	}
}

// layernorm_grad_w sets dw[j] = Σ_r g[r][j]·(x[r][j] − mean_r)·inv_r, a thread per column adding the rows in
// order, in double (ops.LayerNormOp's backward for w).
extern "C" __global__ void layernorm_grad_w(float *dw, const float *x, const float *g, const double *stats, long long rows,
		long long cols) {
	FOR_EACH(j, cols) {
		double acc = 0;
		for (long long r = 0; r < rows; r++)
			acc += (double)g[r * cols + j] * ((double)x[r * cols + j] - stats[2 * r]) * stats[2 * r + 1];
		dw[j] = (float)acc;
	}
}

// quick_gelu_grad sets dx = g·s·(1 + 1.702·x·(1 − s)), s = σ(1.702·x): QuickGELU's backward, in float32
// as the CPU computes it.
extern "C" __global__ void quick_gelu_grad(float *dx, const float *x, const float *g, long long n) {
	FOR_EACH(i, n) {
		float v = x[i];
		float s = 1.0f / (1.0f + expf(-(1.702f * v)));
		dx[i] = g[i] * s * (1.0f + 1.702f * v * (1.0f - s));
	}
}

// gelu_grad sets dx = g·(Φ(x) + x·φ(x)): the exact GELU's backward, in double and rounded once.
extern "C" __global__ void gelu_grad(float *dx, const float *x, const float *g, long long n) {
	FOR_EACH(i, n) {
		double v = x[i];
		double d = 0.5 * (1 + erf(v / 1.4142135623730951)) + v * exp(-v * v / 2) / 2.5066282746310002;
		dx[i] = (float)((double)g[i] * d);
	}
}

// add_bias adds b [cols] to every row of x [n/cols, cols].
extern "C" __global__ void add_bias(float *x, const float *b, long long n, long long cols) {
	FOR_EACH(i, n) { x[i] += b[i % cols]; }
}

// add sets x += y element-wise (residual connections).
extern "C" __global__ void add(float *x, const float *y, long long n) {
	FOR_EACH(i, n) { x[i] += y[i]; }
}

// accumulate adds w·g to the sums s, the product rounded to float32 first (optim.Accumulator.Add: a
// micro-batch's gradient weighted by its supervised tokens).
extern "C" __global__ void accumulate(float *s, const float *g, long long n, double w_) {
	const float w = w_;
	FOR_EACH(i, n) { s[i] += w * g[i]; }
}

// weigh sets x = 0 + w·x in place: a micro-batch's gradient, taken as the step's sums where its graph left
// it, weighted as accumulate adds it to zeroed sums (a product of −0 becomes +0 there too).
extern "C" __global__ void weigh(float *x, long long n, double w_) {
	const float w = w_;
	FOR_EACH(i, n) { x[i] = 0.0f + w * x[i]; }
}

// widen16 sets dst to the 16-bit values src widened to float32, exactly: bfloat16 is a float32's upper half,
// float16 converts (normal numbers, subnormals, infinities and NaNs), as internal/half widens them.
extern "C" __global__ void widen16(float *dst, const unsigned short *src, long long n, long long bf16) {
	FOR_EACH(i, n) {
		unsigned short h = src[i];
		dst[i] = bf16 ? __uint_as_float((unsigned int)h << 16) : __half2float(__ushort_as_half(h));
	}
}

// narrow_bf16 sets dst to the float32 values src rounded to bfloat16, to nearest with ties to even, as
// half.RoundToBF16 (half.BFloat16.Round) rounds them: the upper half of the bits after adding 0x7fff plus the
// lowest kept bit, which carries exactly when the dropped half is above one half, or equal to it with an odd
// kept half.
extern "C" __global__ void narrow_bf16(unsigned short *dst, const float *src, long long n) {
	FOR_EACH(i, n) {
		unsigned int b = __float_as_uint(src[i]);
		dst[i] = (unsigned short)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
	}
}

// divide sets x = x / d element-wise (optim.Accumulator.Finish: the token-weighted mean of the sums).
extern "C" __global__ void divide(float *x, long long n, double d_) {
	const float d = d_;
	FOR_EACH(i, n) { x[i] = x[i] / d; }
}

// flex_softmax turns one sample's second-softmax scores S [H, R, L + M] into probabilities, a block per
// row: the R rows are the sample's rows rows[0..R) (every real row in the dense form, the HR rows with a
// selection in the union form), each scored against the sample's L plain keys and then its M HR keys. Row
// i = rows[r] sees its first min(i + 1, L) plain keys (all L when full) and, when it is an HR row with a
// selection (rowsel[i] ≠ 0), the HR keys u whose cell cell_of[u] it selected (cells[i·G² + cell]); the
// others get 0, as the CPU's maskedSoftmax gives them. e = exp(s − max) in float32, their sum in double.
extern "C" __global__ void flex_softmax(float *s, const float *cells, const float *rowsel, const long long *cell_of,
		const long long *rows, long long r, long long l, long long m, long long g2, long long full) {
	__shared__ double shared[ROW_THREADS];
	long long i = rows[blockIdx.x % r], width = l + m, keys = full ? l : min(i + 1, l);
	float *row = s + (long long)blockIdx.x * width;
	const float *sel = cells + i * g2;
	bool hr = rowsel[i] != 0;
	double mx = -INFINITY;
	for (long long j = threadIdx.x; j < width; j += blockDim.x) {
		bool seen = j < keys || (j >= l && hr && sel[cell_of[j - l]] != 0);
		if (seen) mx = fmax(mx, (double)row[j]);
	}
	mx = block_max(mx, shared);
	double sum = 0;
	for (long long j = threadIdx.x; j < width; j += blockDim.x) {
		bool seen = j < keys || (j >= l && hr && sel[cell_of[j - l]] != 0);
		float e = seen ? expf(row[j] - (float)mx) : 0;
		row[j] = e;
		sum += e;
	}
	float inv = (float)(1 / block_sum(sum, shared));
	for (long long j = threadIdx.x; j < width; j += blockDim.x) row[j] *= inv;
}

// scale_rows sets dst[r][j] = w[r]·src[r][j] for rows of width values (a row weight: a plain output's share
// in a FlexAttention row, α on the rows that blend).
extern "C" __global__ void scale_rows(float *dst, const float *src, const float *w, long long n, long long width) {
	FOR_EACH(i, n) { dst[i] = w[i / width] * src[i]; }
}

// flex_blend sets o = (1 − α)·o + α·mix on one sample's rows rows[c] with rowsel ≠ 0, from mix [R, W] (row
// c of mix is row rows[c] of o [L, W]).
extern "C" __global__ void flex_blend(float *o, const float *mix, const float *rowsel, const long long *rows, long long n,
		long long width, double alpha_) {
	const float alpha = alpha_;
	FOR_EACH(e, n) {
		long long i = rows[e / width], at = i * width + e % width;
		if (rowsel[i] != 0) o[at] = (1 - alpha) * o[at] + alpha * mix[e];
	}
}

// add_rows adds src [R, W] into the rows rows[c] of dst (distinct rows: no two threads add to one value).
extern "C" __global__ void add_rows(float *dst, const float *src, const long long *rows, long long n, long long width) {
	FOR_EACH(e, n) { dst[rows[e / width] * width + e % width] += src[e]; }
}

// gather_rows sets each row r of out [rows, D] to row index[r] of the table that kind[r] names (1: tokens,
// 2: image features, 3: HR features; 0: a padding row, zeros), as ops.Assemble does.
extern "C" __global__ void gather_rows(float *out, const long long *kind, const long long *index, const float *tokens,
		const float *image, const float *hr, long long rows, long long d) {
	FOR_EACH(i, rows * d) {
		long long r = i / d, j = i % d, k = kind[r];
		const float *t = k == 1 ? tokens : k == 2 ? image : hr;
		out[i] = k == 0 ? 0 : t[index[r] * d + j];
	}
}

// scatter_rows sets each row t of a table's gradient [T, D] to the sum, in increasing order of r, of the
// rows r of g [rows, D] that it fed: those listed in from[start[t] : start[t+1]] (CSR, increasing). One
// thread per value, so no two threads add into one value and the order is the CPU's.
extern "C" __global__ void scatter_rows(float *dt, const float *g, const long long *start, const long long *from,
		long long tableRows, long long d) {
	FOR_EACH(i, tableRows * d) {
		long long t = i / d, j = i % d;
		float s = 0;
		for (long long p = start[t]; p < start[t + 1]; p++) s += g[from[p] * d + j];
		dt[i] = s;
	}
}

// im2col sets patches [images·g², 3·P·P] from images [images, 3, S, S]: patch (gy, gx) of an image, channel by
// channel and row by row, as the tower's patch embedding reads it (model/vision.go lrPatches).
extern "C" __global__ void im2col(float *patches, const float *px, long long images, long long s, long long p) {
	long long g = s / p, width = 3 * p * p;
	FOR_EACH(i, images * g * g * width) {
		long long patch = i / width, e = i % width;
		long long img = patch / (g * g), cell = patch % (g * g), gy = cell / g, gx = cell % g;
		long long c = e / (p * p), py = (e / p) % p, pxl = e % p;
		patches[i] = px[((img * 3 + c) * s + gy * p + py) * s + gx * p + pxl];
	}
}
