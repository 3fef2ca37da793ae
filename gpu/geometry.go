package gpu

// The launch constants of kernels/kernels.cu (BLOCK and ROW_THREADS there).
const (
	BlockSize  = 256 // threads of an element-wise block
	RowThreads = 256 // threads of a row block (a power of two: the reduction halves it)
	maxBlocks  = 4096
)

// Grid is a one-dimensional launch: Blocks blocks of Threads threads.
type Grid struct{ Blocks, Threads int }

// Elementwise is the launch of a grid-stride kernel over n elements: enough blocks to give each thread one
// element, capped at maxBlocks (the threads then loop); at least one block, so that a launch is always
// valid.
func Elementwise(n int) Grid {
	return Grid{Blocks: max(1, min((n+BlockSize-1)/BlockSize, maxBlocks)), Threads: BlockSize}
}

// Rows is the launch of a row kernel (rmsnorm): one block of RowThreads threads per row.
func Rows(rows int) Grid { return Grid{Blocks: rows, Threads: RowThreads} }

// AdamWConsts are one AdamW step's constants, in optim's order and in the layout of kernels.cu's
// adamw_consts: β1, 1−β1, β2, 1−β2, the bias corrections 1−β1^t and 1−β2^t, ε, the learning rate and the
// weight decay (0 for vectors).
type AdamWConsts struct{ B1, C1, B2, C2, D1, D2, Eps, LR, WD float32 }
