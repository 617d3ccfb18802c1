package sd

import (
	"math"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
)

func numParams(s Schema) int {
	n := 0
	for _, shape := range s {
		p := 1
		for _, d := range shape {
			p *= d
		}
		n += p
	}
	return n
}

// TestSD15Schemas: the full-size schemas have SD 1.5's published parameter
// counts (diffusers' num_parameters() of runwayml/stable-diffusion-v1-5).
func TestSD15Schemas(t *testing.T) {
	for _, c := range []struct {
		name string
		s    Schema
		want int
	}{
		{"unet", UNetSchema(SD15UNetConfig()), 859520964},
		{"vae", VAESchema(SD15VAEConfig()), 83653863},
		{"text_encoder", TextSchema(CLIPLTextConfig()), 123060480},
	} {
		if got := numParams(c.s); got != c.want {
			t.Errorf("%s: %d parameters in %d tensors, want %d", c.name, got, len(c.s), c.want)
		} else {
			t.Logf("%s: %d parameters in %d tensors", c.name, got, len(c.s))
		}
	}
}

// TestSD15_randomWeights builds the full-size SD 1.5 text encoder and
// U-Net from random weights under the diffusers keys (generated on demand,
// never stored), loads them through the loader with packed f16 weights, and
// runs the text encoder on a 77-token prompt and the U-Net on an 8x8
// latent: real shapes and key names, finite outputs of the right shape.
//
// It takes about a minute on lavapipe (most of it the U-Net's first
// forward: pipeline compilation and 13.5 GFLOP at small spatial sizes), so
// -short skips it; the normal suite runs it.
func TestSD15_randomWeights(t *testing.T) {
	if testing.Short() {
		t.Skip("full-size SD 1.5 forward (about a minute on lavapipe); run without -short")
	}
	e := engine(t)
	opts := LoadOptions{F16Weights: true}
	e.Trim()
	e.ResetPeaks()
	before := e.MemStats().Live[gpu.Weights]
	start := time.Now()
	tcfg := CLIPLTextConfig()
	text, err := LoadTextFrom(e, RandomCheckpoint(TextSchema(tcfg), 2, "random-clip-l.safetensors"), clip.TextConfig{HiddenAct: "quick_gelu"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer text.W.Release()
	// Only what weights cannot tell: the U-Net's head count defaults to
	// SD 1.x's 8, the text encoder's to width/64 = 12.
	unet, err := LoadUNetFrom(e, RandomCheckpoint(UNetSchema(SD15UNetConfig()), 1, "random-sd15-unet.safetensors"), defaultUNetConfig(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer unet.W.Release()
	if err := e.Sync(); err != nil { // the uploads land
		t.Fatal(err)
	}
	load := time.Since(start)
	c := unet.Cfg
	if !equalShape(c.BlockOutChannels, []int{320, 640, 1280, 1280}) || c.CrossAttentionDim != 768 || c.TimeEmbedDim != 1280 ||
		c.Heads[0] != 8 || c.LayersPerBlock != 2 || text.Cfg.Heads != 12 || text.Cfg.Layers != 12 || text.Cfg.Intermediate != 3072 {
		t.Fatalf("inferred U-Net %+v, text %+v", c, text.Cfg)
	}
	params := numParams(UNetSchema(c)) + numParams(TextSchema(text.Cfg))
	wb := e.MemStats().Live[gpu.Weights] - before
	t.Logf("loaded %d parameters in %.1f s: %.2f GiB of weights on the GPU (%.2f bytes per parameter)",
		params, load.Seconds(), float64(wb)/(1<<30), float64(wb)/float64(params))
	if r := float64(wb) / float64(params); r < 1.9 || r > 2.3 {
		t.Errorf("%.2f bytes per parameter, want about 2 (packed f16)", r)
	}

	ids := make([]int32, clip.ContextLength)
	for i := range ids {
		ids[i] = clip.EndOfText
	}
	copy(ids, []int32{clip.StartOfText, 320, 1125, 539, 320, 2368, clip.EndOfText}) // "a photo of a dog"
	x := make([]float32, 4*8*8)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.7))
	}
	var eps *gpu.Tensor
	var textTime time.Duration
	start = time.Now()
	e.NoGrad(func() {
		out, err := text.Forward([][]int32{ids})
		if err != nil {
			t.Fatal(err)
		}
		ctx := out.Last // [1, 77, 768]
		if err := e.Sync(); err != nil {
			t.Fatal(err)
		}
		textTime = time.Since(start)
		start = time.Now()
		eps = unet.Forward(e.FromSlice(x, 1, 4, 8, 8), e.FromSlice([]float32{500}, 1), ctx) // [1, 4, 8, 8]
	})
	got, err := eps.Read()
	if err != nil {
		t.Fatal(err)
	}
	unetTime := time.Since(start)
	if !equalShape(eps.Shape(), []int{1, 4, 8, 8}) {
		t.Fatalf("U-Net output %v, want [1 4 8 8]", eps.Shape())
	}
	mean, sq := 0.0, 0.0
	for i, v := range got {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("output[%d] = %g", i, v)
		}
		mean += float64(v)
		sq += float64(v) * float64(v)
	}
	mean /= float64(len(got))
	std := math.Sqrt(sq/float64(len(got)) - mean*mean)
	if std < 1e-3 {
		t.Errorf("output is constant (mean %g, std %g)", mean, std)
	}
	ms := e.MemStats()
	t.Logf("text encoder (77 tokens) %.1f s, U-Net forward (8x8 latent, batch 1) %.1f s; output mean %.3g std %.3g; peak live %.2f GiB (weights %.2f GiB)",
		textTime.Seconds(), unetTime.Seconds(), mean, std, float64(ms.PeakTotal)/(1<<30), float64(ms.Peak[gpu.Weights])/(1<<30))
}
