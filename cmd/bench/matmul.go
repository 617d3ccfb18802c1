package main

import (
	"fmt"
	"math/rand"

	"github.com/instructbooth/instructbooth/gpu"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Square f32 products C = A @ B against gonum's blas32 Gemm (pure Go, all
// cores).
func init() {
	for _, n := range []int{512, 1024, 2048} {
		n := n
		cases = append(cases, benchCase{
			op: "matmul", size: fmt.Sprintf("%dx%dx%d", n, n, n),
			flop: 2 * float64(n) * float64(n) * float64(n),
			prepare: func(e *gpu.Engine, r *rand.Rand) (run, ref, done func()) {
				x, y := randF32(r, n*n), randF32(r, n*n)
				A, B := e.FromSlice(x, n, n), e.FromSlice(y, n, n)
				run = func() { e.NoGrad(func() { e.MatMul(A, B, false, false).Release() }) }
				ga := blas32.General{Rows: n, Cols: n, Stride: n, Data: x}
				gb := blas32.General{Rows: n, Cols: n, Stride: n, Data: y}
				gc := blas32.General{Rows: n, Cols: n, Stride: n, Data: make([]float32, n*n)}
				ref = func() { blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, ga, gb, 0, gc) }
				return run, ref, func() { A.Release(); B.Release() }
			},
		})
	}
}

func randF32(r *rand.Rand, n int) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = r.Float32()*2 - 1
	}
	return d
}
