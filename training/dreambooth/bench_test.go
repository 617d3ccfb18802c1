package dreambooth

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/instructbooth/instructbooth/model/sd"
)

// BenchmarkDreamBoothStep measures one DreamBooth training step of SD 1.5
// shape on random weights: batch 2 (subject + class image), gradient
// checkpointing on, the loss of the trainer (dreamboothLoss), backward and
// the AdamW step. The base weights are binary16-packed as the app loads
// them (the U-Net, plus the VAE and CLIP-L text encoder that a run keeps
// loaded); IB_MODE=full trains every U-Net weight instead (f32 weights).
// The latent size is IB_LATENT (64 = 512x512 images, the default on a
// GPU). On a CPU adapter (lavapipe) the full-size step takes minutes, so
// the benchmark is skipped there unless IB_LATENT is set (IB_LATENT=8 is
// the smallest). It reports seconds per step, the engine's peak live
// memory by category against the 8 GB target, and EstimateMemory's figure
// for the same run. IB_UNET=tiny swaps in the sd-tiny U-Net shape for a
// quick check of the benchmark itself.
//
//	go test ./training/dreambooth -run '^$' -bench DreamBoothStep -benchtime 3x
func BenchmarkDreamBoothStep(b *testing.B) {
	e := testenv.Engine(b)
	lat := 64
	if s := os.Getenv("IB_LATENT"); s != "" {
		lat, _ = strconv.Atoi(s)
	} else if e.Info.Type == "cpu" {
		b.Skip("full-size SD 1.5 training step on a CPU adapter: set IB_LATENT (e.g. 8) to run it anyway")
	}
	mode := ModeLoRA
	if os.Getenv("IB_MODE") == "full" {
		mode = ModeFull
	}
	opts := sd.LoadOptions{F16Weights: mode == ModeLoRA}
	ucfg, label := sd.SD15UNetConfig(), "SD 1.5"
	if os.Getenv("IB_UNET") == "tiny" {
		label = "sd-tiny" // a quick smoke run of this benchmark's code
		c, err := sd.ReadUNetConfig(filepath.Join(tinyDir(b), "unet", "config.json"))
		if err != nil {
			b.Fatal(err)
		}
		ucfg = c
		ucfg.DownHasAttn, ucfg.TransformerDepth, ucfg.TimeEmbedDim, ucfg.Heads = []bool{true, true, true, false}, 1, 128, []int{8, 8, 8, 8}
	}
	unet, err := sd.LoadUNetFrom(e, sd.RandomCheckpoint(sd.UNetSchema(ucfg), 1, "random-sd15-unet"), ucfg, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer unet.W.Release()
	text, err := sd.LoadTextFrom(e, sd.RandomCheckpoint(sd.TextSchema(sd.CLIPLTextConfig()), 2, "random-clip-l"), clip.TextConfig{HiddenAct: "quick_gelu"}, sd.LoadOptions{F16Weights: true})
	if err != nil {
		b.Fatal(err)
	}
	defer text.W.Release()
	vae, err := sd.LoadVAEFrom(e, sd.RandomCheckpoint(sd.VAESchema(sd.SD15VAEConfig()), 3, "random-sd15-vae"), sd.LoadOptions{F16Weights: true})
	if err != nil {
		b.Fatal(err)
	}
	defer vae.W.Release()
	e.Sync()
	baseWeights := e.MemStats().Live[gpu.Weights]

	cfg := Config{Mode: mode, ClassNoun: "dog", Resolution: 8 * lat}.WithDefaults()
	var params []*gpu.Tensor
	if mode == ModeLoRA {
		a, err := lora.New(unet.W, TargetModules(unet.W, cfg), cfg.Rank, cfg.Alpha, 1)
		if err != nil {
			b.Fatal(err)
		}
		set := &lora.Set{UNet: a}
		defer set.Release()
		tg := lora.Targets{UNet: unet.W}
		set.Attach(tg)
		defer lora.Detach(tg)
		params = set.Params()
	} else {
		params = unet.W.Params()
		for _, p := range params {
			p.SetRequiresGrad(true)
		}
	}
	opt := e.NewAdamW(params, cfg.LR)
	defer opt.Release()
	opt.Beta2, opt.MaxGradNorm = cfg.Beta2, cfg.MaxGradNorm
	unet.Checkpointing = true
	schedule := sched.New(sched.SD15())

	n := 2 * 4 * lat * lat
	x0 := make([]float32, n)
	eps := make([]float32, n)
	for i := range x0 {
		x0[i] = float32(math.Sin(float64(i) * 0.7))
		eps[i] = float32(math.Cos(float64(i) * 1.3))
	}
	ctx := make([]float32, 2*77*ucfg.CrossAttentionDim)
	for i := range ctx {
		ctx[i] = float32(math.Sin(float64(i) * 0.11))
	}
	step := func() float32 {
		s := e.Scope()
		defer s.Close()
		loss, err := dreamboothLoss(unet, schedule, e.FromSlice(x0, 2, 4, lat, lat), e.FromSlice(eps, 2, 4, lat, lat), []int{700, 50},
			e.FromSlice(ctx, 2, 77, ucfg.CrossAttentionDim), 1)
		if err != nil {
			b.Fatal(err)
		}
		lv, err := loss.Item()
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Backward(loss); err != nil {
			b.Fatal(err)
		}
		opt.Step()
		opt.ZeroGrad()
		if err := e.Sync(); err != nil {
			b.Fatal(err)
		}
		return lv
	}
	step() // pipelines compile, optimizer state exists
	e.ResetPeaks()
	b.ResetTimer()
	t0 := time.Now()
	var lv float32
	for i := 0; i < b.N; i++ {
		lv = step()
	}
	sec := time.Since(t0).Seconds() / float64(b.N)
	b.StopTimer()
	ms := e.MemStats()
	est := EstimateMemory(ucfg, cfg, baseWeights)
	g := func(v uint64) float64 { return float64(v) / (1 << 30) }
	b.ReportMetric(sec, "s/step")
	b.ReportMetric(g(ms.PeakTotal), "peak-GiB")
	b.ReportMetric(g(est.Total), "est-GiB")
	line := fmt.Sprintf("DreamBooth %s step, %s U-Net, %dx%d images (latent %d), batch 2, checkpointing: %.3f s/step, loss %.4f\n"+
		"  peak live %.2f GiB of the 8 GB target (peak per category: weights %.2f, activations %.2f, gradients %.2f, optimizer %.3f, scratch %.2f GiB; device peak %.2f GiB)\n"+
		"  EstimateMemory: %.2f GiB (%s)\n  adapter %s",
		mode, label, 8*lat, 8*lat, lat, sec, lv, g(ms.PeakTotal), g(ms.Peak[gpu.Weights]), g(ms.Peak[gpu.Activations]), g(ms.Peak[gpu.Gradients]),
		g(ms.Peak[gpu.OptimizerState]), g(ms.Peak[gpu.Scratch]), g(ms.PeakDevice), g(est.Total), est, e.Info)
	b.Log(line)
	fmt.Fprintln(os.Stderr, line)
	if mode == ModeFull {
		for _, p := range params {
			p.SetRequiresGrad(false)
		}
	}
}
