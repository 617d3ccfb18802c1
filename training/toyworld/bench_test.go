package toyworld

import (
	"fmt"
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

// BenchmarkUNet measures DefaultModelConfig's U-Net (on 8x8x48 latents,
// cross-attention width 64): the seconds of one guided sampling step
// (forward at batch 2, what generation costs per step, and at batch 32, a
// DDPO sampling batch of 16 prompts) and of one training step (forward,
// backward through every weight, AdamW) at batch 2 (DreamBooth with prior
// preservation) and 32 (base-model training).
//
//	go test ./training/toyworld -run '^$' -bench UNet -benchtime 2x
func BenchmarkUNet(b *testing.B) {
	e := testenv.Engine(b)
	cfg := DefaultModelConfig().UNet
	w := NewTrainable(e, sd.UNetSchema(cfg), 1)
	defer w.Release()
	u, err := sd.NewUNet(w, cfg)
	if err != nil {
		b.Fatal(err)
	}
	params := w.Params()
	b.Logf("%d parameters", count(params))
	opt := e.NewAdamW(params, 1e-4)
	defer opt.Release()
	lc := cfg.InChannels
	for _, n := range []int{2, 32} {
		x, ctx := wave(n*lc*8*8, 0.37), wave(n*77*64, 0.11)
		ts := make([]float32, n)
		for i := range ts {
			ts[i] = float32(30 * i)
		}
		forward := func() {
			e.NoGrad(func() {
				s := e.Scope()
				defer s.Close()
				out := u.Forward(e.FromSlice(x, n, lc, 8, 8), e.FromSlice(ts, n), e.FromSlice(ctx, n, 77, 64))
				if _, err := out.Read(); err != nil {
					b.Fatal(err)
				}
			})
		}
		train := func() {
			s := e.Scope()
			out := u.Forward(e.FromSlice(x, n, lc, 8, 8), e.FromSlice(ts, n), e.FromSlice(ctx, n, 77, 64))
			loss := e.MSELoss(out, e.FromSlice(x, n, lc, 8, 8))
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
			b.Run(fmt.Sprintf("%s/batch%d", c.what, n), func(b *testing.B) {
				c.f() // pipelines compile
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					c.f()
				}
				b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/step")
			})
		}
	}
}

func wave(n int, f float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(f * float64(i)))
	}
	return v
}

func count(ts []*gpu.Tensor) int {
	n := 0
	for _, t := range ts {
		n += t.Len()
	}
	return n
}

// BenchmarkVAE measures one decode and one encode of a 64x64 image by the
// AutoencoderKL of VAEConfig64 (the --vae kl option), and a text-encoder
// forward at batch 2.
//
//	go test ./training/toyworld -run '^$' -bench 'VAE' -benchtime 3x
func BenchmarkVAE(b *testing.B) {
	e := testenv.Engine(b)
	c := DefaultModelConfig()
	c.VAE, c.Codec, c.ImageSize = VAEConfig64(), 0, 64
	c = c.WithShape(c.UNet.BlockOutChannels, 4)
	m, err := NewModel(e, c, 1)
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
