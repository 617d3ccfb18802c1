package gpu

import (
	"fmt"
	"math/rand"
	"testing"
	"time"
)

// BenchmarkConv2d times the convolution kernels at Stable Diffusion-like
// shapes (scaled so one iteration takes well under a second on lavapipe)
// and reports GFLOP/s: 2*N*Cout*Ho*Wo*Cin*KH*KW flops for the forward and
// for each of the two backward GEMMs (dX, dW). On CPU adapters it also
// reports GFLOP per CPU-second of this process (GFLOP/cpu-s), which is what
// to compare on a machine shared with other jobs. Each iteration ends with
// Sync; the first run (the pipeline's JIT) is not timed. Run with
//
//	go test ./gpu -run '^$' -bench Conv2d -benchtime 3x
func BenchmarkConv2d(b *testing.B) {
	e := engine(b)
	for _, c := range []struct {
		name        string
		x, w        []int
		stride, pad int
	}{
		{"3x3_320x32x32", []int{1, 320, 32, 32}, []int{320, 320, 3, 3}, 1, 1},
		{"3x3s2_320x32x32", []int{1, 320, 32, 32}, []int{320, 320, 3, 3}, 2, 1},
		{"1x1_320x64x64", []int{1, 320, 64, 64}, []int{320, 320, 1, 1}, 1, 0},
	} {
		r := rand.New(rand.NewSource(1))
		rnd := func(shape ...int) *Tensor {
			d := make([]float32, numel(shape))
			for i := range d {
				d[i] = r.Float32()*2 - 1
			}
			return e.FromSlice(d, shape...)
		}
		x, w, bias := rnd(c.x...), rnd(c.w...), rnd(c.w[0])
		var out *Tensor
		e.NoGrad(func() { out = e.Conv2d(x, w, bias, c.stride, c.pad) })
		g := rnd(out.shape...)
		geom := convGeom{n: c.x[0], cin: c.x[1], h: c.x[2], w: c.x[3], cout: c.w[0], kh: c.w[2], kw: c.w[3],
			ho: out.shape[2], wo: out.shape[3], stride: c.stride, pad: c.pad, hasBias: true}
		geom.planeIn, geom.planeOut = geom.h*geom.w, geom.ho*geom.wo
		flops := 2 * float64(geom.n*geom.cout*geom.planeOut*geom.cin*geom.khw())
		dx, dw := e.alloc(x.shape...), e.alloc(w.shape...)
		for _, k := range []struct {
			name string
			run  func()
		}{
			{"fwd", func() { e.conv2dForward(geom, x, w, bias, out) }},
			{"bwd_input", func() { e.conv2dBackwardInput(geom, g, w, dx) }},
			{"bwd_weight", func() { e.conv2dBackwardWeight(geom, g, x, dw) }},
		} {
			b.Run(fmt.Sprintf("%s/%s", c.name, k.name), func(b *testing.B) {
				k.run() // warm up: pipeline compilation
				if err := e.Sync(); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				start, cpu0 := time.Now(), processCPU()
				for i := 0; i < b.N; i++ {
					k.run()
					if err := e.Sync(); err != nil {
						b.Fatal(err)
					}
				}
				total := flops * float64(b.N) / 1e9
				b.ReportMetric(total/time.Since(start).Seconds(), "GFLOP/s")
				if cpu := processCPU() - cpu0; cpu > 0 && e.Info.Type == "cpu" {
					b.ReportMetric(total/cpu.Seconds(), "GFLOP/cpu-s")
				}
			})
		}
		for _, t := range []*Tensor{x, w, bias, out, g, dx, dw} {
			t.Release()
		}
	}
}
