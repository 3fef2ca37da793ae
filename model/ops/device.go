package ops

import (
	"sync"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/half"
)

// Device runs a graph's operations where the graph's values live: an accelerator's memory. A graph with a
// device attached (AttachDevice) is the same graph, with the same operations in the same order and the same
// backward passes; each operation hands its Kernel to the device instead of running the CPU's arithmetic.
// Gorgonia's own operations in a graph (the sum of a node's gradient contributions) reach the device
// through the tensor.Engine of its values, which the device sets.
type Device interface {
	// Run computes the output of k over in: the device's values, or host values where the graph holds
	// them (scalars such as the gradient's seed).
	Run(k Kernel, in []G.Value) (G.Value, error)
}

// Kernel is one operation of a graph as a device sees it: its name, the parameters it was built with, and
// the CPU's arithmetic for it, which a device's results are checked against and which it may fall back to.
type Kernel struct {
	Name string
	// Args are the operation's parameters: nil for plain arithmetic (Add, AddBias, GELU, SwiGLU and its
	// gradients), or one of the …Args types of this package (or *SelectPlan). An operation's
	// forward kernel and the kernels of its backward pass share one Args value, and with it Saved.
	Args any
	cpu  doFunc
}

// RunOnCPU computes k's output over host values with the CPU's arithmetic. An operation that keeps state
// for its backward pass keeps it in the operation, so a device runs an operation and its backward pass
// either both on the CPU or both itself.
func (k Kernel) RunOnCPU(in []G.Value) (G.Value, error) { return k.cpu(nil, in) }

// Saved is where a device keeps what an operation's forward pass leaves for its backward pass (the CPU's
// own is in the operation). The device owns Value and frees it when the graph's values go.
type Saved struct{ Value any }

// The parameters of the kernels that have any, as the operations of this package build them.
type (
	// NormArgs: RMSNorm, RMSNormGradX, RMSNormGradW, LayerNorm and its gradients.
	NormArgs struct{ Eps float64 }
	// MatMulArgs: Linear (x·wᵀ), LinearGradX and LinearGradW: op(a)·op(b) with a transposed when TA and b
	// when TB, in Precision.
	MatMulArgs struct {
		TA, TB    bool
		Precision Precision
	}
	// RopeArgs: Rope and RopeGrad (Inverse: the rotation's adjoint), with tables [period, HeadDim].
	RopeArgs struct {
		Cos, Sin []float64
		HeadDim  int
		Inverse  bool
	}
	// AttentionArgs: Attention and AttentionGrad.
	AttentionArgs struct {
		Layout Layout
		Saved
	}
	// FlexArgs: FlexAttention and FlexAttentionGrad.
	FlexArgs struct {
		Plan *FlexPlan
		Saved
	}
	// XentArgs: CrossEntropy and CrossEntropyGrad.
	XentArgs struct {
		Targets []int
		Saved
	}
	// AssembleArgs: Assemble, whose inputs are the embedding table, the image features when Image and the
	// HR features when HR; and AssembleGrad, the gradient of the table of Kind (shape Table).
	AssembleArgs struct {
		Sources   []Source
		Image, HR bool
		Kind      SourceKind
		Table     tensor.Shape
	}
	// RowsArgs: GatherRows (rows Index of its input) and GatherRowsGrad (added back into Shape).
	RowsArgs struct {
		Index []int
		Shape tensor.Shape
	}
	// HalfArgs: LinearHalf (x·Wᵀ, Transposed) and LinearHalfGradX (g·W), W a frozen weight in 16 bits,
	// in Precision.
	HalfArgs struct {
		W          half.Matrix
		Transposed bool
		Precision  Precision
	}
	// ReshapeArgs: Reshape's output shape.
	ReshapeArgs struct{ Shape tensor.Shape }
	// UnpackArgs: the elements [Off, Off+|Shape|) of a packed gradient.
	UnpackArgs struct {
		Off   int
		Shape tensor.Shape
	}
)

var devices sync.Map // *G.ExprGraph → Device

// AttachDevice makes every operation built on g from now on run on d; DetachDevice forgets it (operations
// built keep it).
func AttachDevice(g *G.ExprGraph, d Device) {
	if d != nil {
		devices.Store(g, d)
	}
}

// DetachDevice forgets g's device.
func DetachDevice(g *G.ExprGraph) { devices.Delete(g) }

// deviceOf returns the device attached to g, or nil.
func deviceOf(g *G.ExprGraph) Device {
	if d, ok := devices.Load(g); ok {
		return d.(Device)
	}
	return nil
}
