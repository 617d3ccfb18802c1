package sd

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
)

// BenchmarkSD15 measures one SD 1.5-shaped generation on random weights
// (f16-packed, as the app loads them): the text encoder on two prompts
// (CFG), one U-Net step at batch 2, and the VAE decode of one image. The
// latent size comes from IB_LATENT (64 = 512x512 images; default 64 on a
// GPU, 8 on a CPU adapter). It reports seconds per U-Net step, per decode,
// and the engine's peak live memory in GiB, the figure the 4 GB target is
// about. Run: go test ./model/sd -run '^$' -bench SD15 -benchtime 3x
func BenchmarkSD15(b *testing.B) {
	e := engine(b)
	opts := LoadOptions{F16Weights: true}
	lat := 64
	if e.Info.Type == "cpu" {
		lat = 8
	}
	if s := os.Getenv("IB_LATENT"); s != "" {
		lat, _ = strconv.Atoi(s)
	}
	text, err := LoadTextFrom(e, RandomCheckpoint(TextSchema(CLIPLTextConfig()), 2, "random-clip-l"), clip.TextConfig{HiddenAct: "quick_gelu"}, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer text.W.Release()
	unet, err := LoadUNetFrom(e, RandomCheckpoint(UNetSchema(SD15UNetConfig()), 1, "random-sd15-unet"), defaultUNetConfig(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer unet.W.Release()
	vae, err := LoadVAEFrom(e, RandomCheckpoint(VAESchema(SD15VAEConfig()), 3, "random-sd15-vae"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer vae.W.Release()
	ids := make([]int32, clip.ContextLength)
	for i := range ids {
		ids[i] = clip.EndOfText
	}
	ids[0] = clip.StartOfText
	x := make([]float32, 2*4*lat*lat)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.7))
	}
	e.Sync()
	e.ResetPeaks()
	var unetT, vaeT, textT time.Duration
	for i := 0; i < b.N; i++ {
		e.NoGrad(func() {
			s := e.Scope()
			defer s.Close()
			t0 := time.Now()
			out, err := text.Forward([][]int32{ids, ids})
			if err != nil {
				b.Fatal(err)
			}
			e.Sync()
			textT += time.Since(t0)
			t0 = time.Now()
			eps := unet.Forward(e.FromSlice(x, 2, 4, lat, lat), e.FromSlice([]float32{500, 500}, 2), out.Last) // [2, 4, lat, lat]
			if _, err := eps.Read(); err != nil {
				b.Fatal(err)
			}
			unetT += time.Since(t0)
			t0 = time.Now()
			img := vae.Decode(e.FromSlice(x[:4*lat*lat], 1, 4, lat, lat)) // [1, 3, 8 lat, 8 lat]
			if _, err := img.Read(); err != nil {
				b.Fatal(err)
			}
			vaeT += time.Since(t0)
		})
	}
	n := float64(b.N)
	ms := e.MemStats()
	b.ReportMetric(textT.Seconds()/n, "s/text")
	b.ReportMetric(unetT.Seconds()/n, "s/unet-step")
	b.ReportMetric(vaeT.Seconds()/n, "s/decode")
	b.ReportMetric(float64(ms.PeakTotal)/(1<<30), "peak-GiB")
	b.Logf("%s: latent %dx%d (images %dx%d), U-Net batch 2: %s", e.Info.Name, lat, lat, 8*lat, 8*lat, ms)
	fmt.Fprintf(os.Stderr, "SD15 latent %d: text %.3fs, unet step %.3fs, decode %.3fs, peak live %.2f GiB (weights peak %.2f GiB)\n",
		lat, textT.Seconds()/n, unetT.Seconds()/n, vaeT.Seconds()/n, float64(ms.PeakTotal)/(1<<30), float64(ms.Peak[gpu.Weights])/(1<<30))
}

// BenchmarkUNet_tiny times one U-Net forward of the sd-tiny fixture model
// (batch 2, 8x8 latent, CFG-sized), in seconds per forward.
func BenchmarkUNet_tiny(b *testing.B) {
	e := engine(b)
	p, err := Load(e, filepath.Join(fixtures(b), "sd-tiny", "diffusers"), LoadOptions{Components: CompUNet})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Release()
	x := make([]float32, 2*4*8*8)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	ctx := make([]float32, 2*77*p.UNet.Cfg.CrossAttentionDim)
	run := func() {
		e.NoGrad(func() {
			s := e.Scope()
			defer s.Close()
			eps := p.UNet.Forward(e.FromSlice(x, 2, 4, 8, 8), e.FromSlice([]float32{500, 500}, 2), e.FromSlice(ctx, 2, 77, p.UNet.Cfg.CrossAttentionDim))
			if _, err := eps.Read(); err != nil {
				b.Fatal(err)
			}
		})
	}
	run() // pipeline compiles
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		run()
	}
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/forward")
}
