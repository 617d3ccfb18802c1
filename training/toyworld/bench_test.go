package toyworld

import (
	"math"
	"os"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/sd"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

// benchUNets are the U-Net sizes measured for the choice of
// DefaultModelConfig (all on 8x8x4 latents, cross-attention width 64).
var benchUNets = map[string]sd.UNetConfig{
	"c32-64":  unetConfig([]int{32, 64}, 1, 64, 4, 32),
	"c64-64":  unetConfig([]int{64, 64}, 1, 64, 4, 32),
	"c64-128": unetConfig([]int{64, 128}, 1, 64, 4, 32),
}

func wave(n int, f float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(f * float64(i)))
	}
	return v
}

// BenchmarkUNet measures, per U-Net size, the seconds of one guided
// sampling step (forward at batch 2, what DDPO sampling and generation
// cost per step), and of one training step at batch 2 (forward, backward
// through every weight, AdamW), what DreamBooth with prior preservation
// costs per step and DDPO per trajectory step pair.
//
// Sizes are named by block_out_channels; all have one resnet per level
// and attention at both levels.
//
//	go test ./training/toyworld -run '^$' -bench UNet -benchtime 2x
func BenchmarkUNet(b *testing.B) {
	e := testenv.Engine(b)
	for _, name := range []string{"c32-64", "c64-64", "c64-128"} {
		cfg := benchUNets[name]
		w := NewTrainable(e, sd.UNetSchema(cfg), 1)
		u, err := sd.NewUNet(w, cfg)
		if err != nil {
			b.Fatal(err)
		}
		params := w.Params()
		opt := e.NewAdamW(params, 1e-4)
		x, ctx := wave(2*4*8*8, 0.37), wave(2*77*64, 0.11)
		forward := func() {
			e.NoGrad(func() {
				s := e.Scope()
				defer s.Close()
				out := u.Forward(e.FromSlice(x, 2, 4, 8, 8), e.FromSlice([]float32{500, 500}, 2), e.FromSlice(ctx, 2, 77, 64))
				if _, err := out.Read(); err != nil {
					b.Fatal(err)
				}
			})
		}
		train := func() {
			s := e.Scope()
			out := u.Forward(e.FromSlice(x, 2, 4, 8, 8), e.FromSlice([]float32{500, 300}, 2), e.FromSlice(ctx, 2, 77, 64))
			loss := e.MSELoss(out, e.FromSlice(x, 2, 4, 8, 8))
			if err := e.Backward(loss); err != nil {
				b.Fatal(err)
			}
			opt.Step()
			opt.ZeroGrad()
			if _, err := loss.Item(); err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
		for _, c := range []struct {
			what string
			f    func()
		}{{"sample", forward}, {"train", train}} {
			b.Run(name+"/"+c.what, func(b *testing.B) {
				c.f() // pipelines compile
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					c.f()
				}
				b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/step")
			})
		}
		b.Logf("%s: %d parameters", name, count(params))
		opt.Release()
		w.Release()
	}
}

func count(ts []*gpu.Tensor) int {
	n := 0
	for _, t := range ts {
		n += t.Len()
	}
	return n
}

// BenchmarkVAE measures one decode and one encode of a 64x64 image and a
// text-encoder forward at batch 2 for DefaultModelConfig.
//
//	go test ./training/toyworld -run '^$' -bench 'VAE' -benchtime 3x
func BenchmarkVAE(b *testing.B) {
	e := testenv.Engine(b)
	m, err := NewModel(e, DefaultModelConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Release()
	z, img := wave(4*8*8, 0.3), wave(3*64*64, 0.05)
	ids := [][]int32{make([]int32, 77), make([]int32, 77)}
	for i := range ids[0] {
		ids[0][i], ids[1][i] = int32(i%50), int32(i%40)
	}
	for _, c := range []struct {
		what string
		f    func()
	}{
		{"decode", func() { _, _ = m.VAE.Decode(e.FromSlice(z, 1, 4, 8, 8)).Read() }},
		{"encode", func() { mean, _ := m.VAE.Encode(e.FromSlice(img, 1, 3, 64, 64)); _, _ = mean.Read() }},
		{"text", func() {
			out, err := m.Text.Forward(ids)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = out.Last.Read()
		}},
	} {
		b.Run(c.what, func(b *testing.B) {
			run := func() {
				e.NoGrad(func() {
					s := e.Scope()
					defer s.Close()
					c.f()
				})
			}
			run()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				run()
			}
			b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/op")
		})
	}
}
