// Package ref holds plain-Go float64 reference implementations of every
// engine op, forward and backward. They are written for clarity, not
// speed: the GPU kernels are tested against them, and they in turn are
// tested against finite differences.
package ref

import "fmt"

// T is a dense row-major float64 tensor.
type T struct {
	Shape []int
	Data  []float64
}

// New returns a zero tensor.
func New(shape ...int) *T {
	return &T{Shape: append([]int(nil), shape...), Data: make([]float64, Numel(shape))}
}

// From wraps data (not copied).
func From(data []float64, shape ...int) *T {
	if Numel(shape) != len(data) {
		panic(fmt.Sprintf("ref: %d values for shape %v", len(data), shape))
	}
	return &T{Shape: append([]int(nil), shape...), Data: data}
}

// Clone deep-copies t.
func (t *T) Clone() *T {
	return &T{Shape: append([]int(nil), t.Shape...), Data: append([]float64(nil), t.Data...)}
}

// Numel is the product of shape.
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Dot is sum(a*b).
func Dot(a, b *T) float64 {
	s := 0.0
	for i := range a.Data {
		s += a.Data[i] * b.Data[i]
	}
	return s
}
