package gpu

import (
	"fmt"
	"math/rand"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// BenchmarkMatMul times square f32 products C = A @ B on the engine's WGSL
// kernel and with gonum's blas32 Gemm (pure Go, all cores) side by side:
//
//	go test ./gpu -run XXX -bench MatMul
//
// Each WGSL iteration ends with WaitIdle (a Sync without wgpu's 5 s limit),
// so the GPU work is really done. The first product, which pays for the
// pipeline's JIT on lavapipe, runs before the timer starts.
func BenchmarkMatMul(b *testing.B) {
	for _, n := range []int{512, 1024, 2048} {
		flop := 2 * float64(n) * float64(n) * float64(n)
		r := rand.New(rand.NewSource(1))
		x, y := randF32(r, n*n), randF32(r, n*n)
		b.Run(fmt.Sprintf("wgsl/%d", n), func(b *testing.B) {
			e := engine(b)
			A, B := e.FromSlice(x, n, n), e.FromSlice(y, n, n)
			defer A.Release()
			defer B.Release()
			run := func() {
				e.NoGrad(func() { e.MatMul(A, B, false, false).Release() })
				if err := e.WaitIdle(); err != nil {
					b.Fatal(err)
				}
			}
			run()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
			b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprintf("gonum/%d", n), func(b *testing.B) {
			A := blas32.General{Rows: n, Cols: n, Stride: n, Data: x}
			B := blas32.General{Rows: n, Cols: n, Stride: n, Data: y}
			C := blas32.General{Rows: n, Cols: n, Stride: n, Data: make([]float32, n*n)}
			blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, A, B, 0, C)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, A, B, 0, C)
			}
			b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
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
