package ddpo

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/training/reward"
)

// memoryBudget is the GPU memory one DDPO update of SD 1.5 at 512x512 must
// fit, by the engine's accounting.
const memoryBudget = 8 << 30

// BenchmarkDDPOStep measures one DDPO policy update of full-size SD 1.5
// (random weights, f16-packed as the command line loads them; U-Net, text
// encoder and VAE resident as in a run): the trainable rank-4 LoRA on the
// attention projections, a training batch of IB_DDPO_BATCH (default 8)
// trajectories at one timestep each in micro-batches of IB_DDPO_MICRO
// (default DefaultMicroBatch), classifier-free guidance (U-Net batch 2x
// the micro-batch), gradient checkpointing, the backward pass and the
// AdamW step.
// It prints the engine's peak memory by category against the 8 GB budget.
// The latent size comes from IB_LATENT (64 = 512x512 images; default 64 on
// a GPU, 8 on a CPU adapter, where full size would take very long).
// Run: go test ./training/ddpo -run '^$' -bench DDPOStep -benchtime 1x
func BenchmarkDDPOStep(b *testing.B) {
	e := testenv.Engine(b)
	lat := 64
	if e.Info.Type == "cpu" {
		lat = 8
	}
	if s := os.Getenv("IB_LATENT"); s != "" {
		lat, _ = strconv.Atoi(s)
	}
	bs := DefaultBatchSize
	if s := os.Getenv("IB_DDPO_BATCH"); s != "" {
		bs, _ = strconv.Atoi(s)
	}
	opts := sd.LoadOptions{F16Weights: true}
	text, err := sd.LoadTextFrom(e, sd.RandomCheckpoint(sd.TextSchema(sd.CLIPLTextConfig()), 2, "random-clip-l"), clip.TextConfig{HiddenAct: "quick_gelu"}, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer text.W.Release()
	unet, err := sd.LoadUNetFrom(e, sd.RandomCheckpoint(sd.UNetSchema(sd.SD15UNetConfig()), 1, "random-sd15-unet"), sd.SD15UNetConfig(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer unet.W.Release()
	vae, err := sd.LoadVAEFrom(e, sd.RandomCheckpoint(sd.VAESchema(sd.SD15VAEConfig()), 3, "random-sd15-vae"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer vae.W.Release()
	// The tokenizer and the SD 1.5 schedule come from the fixture folder
	// (the same vocabulary and scheduler config as SD 1.5).
	tok, err := sd.Load(e, filepath.Join(testenv.Fixtures(b), "sd-tiny", "diffusers"), sd.LoadOptions{Components: sd.CompTokenizer})
	if err != nil {
		b.Fatal(err)
	}
	c := generate.Components{Tokenizer: tok.Tokenizer, Text: text, UNet: unet, VAE: vae, Schedule: tok.Schedule, Name: "random-sd15"}
	micro := DefaultMicroBatch
	if s := os.Getenv("IB_DDPO_MICRO"); s != "" {
		micro, _ = strconv.Atoi(s)
	}
	benchUpdate(b, c, lat, bs, micro)
}

// BenchmarkDDPOStep_tiny runs the same measurement on the sd-tiny fixture
// model (8x8 latents): seconds, and a check of the code path on CPUs.
func BenchmarkDDPOStep_tiny(b *testing.B) {
	_, c := tiny(b)
	benchUpdate(b, c, 8, 4, 2)
}

// benchUpdate times one policy update of a batch of bs trajectories with
// lat x lat latents in micro-batches of micro on c and prints the peak
// memory by category.
func benchUpdate(b *testing.B, c generate.Components, lat, bs, micro int) {
	e := c.UNet.W.E
	unet := c.UNet
	cfg := Config{Prompts: []string{"a sks dog playing soccer"}, SamplesPerEpoch: bs, BatchSize: bs, MicroBatch: micro, Width: 8 * lat, Height: 8 * lat}
	tr, err := New(c, reward.Brightness{}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Release()
	k := tr.cfg.Steps
	per := 4 * lat * lat
	samples := make([]*Sample, bs)
	steps := make([][]int, bs)
	idx := make([]int, bs)
	adv := make([]float64, bs)
	for i := range samples {
		s := &Sample{Latents: make([][]float32, k+1), LogProbs: make([]float32, k)}
		for j := range s.Latents {
			s.Latents[j] = make([]float32, per)
			generate.Noise(uint64(i), uint64(j), s.Latents[j])
		}
		samples[i] = s
		steps[i] = []int{(i * 7) % k} // elements at different timesteps
		idx[i] = i
		adv[i] = float64(i%3) - 1
	}
	chunks, err := tr.batchChunks(samples, adv, idx, steps)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, c := range chunks {
			c.ctx.Release()
		}
	}()
	// The "sampling" log-probabilities: the policy's own (ratio 1).
	e.NoGrad(func() {
		for _, ch := range chunks {
			s := e.Scope()
			lp, _, err := tr.logProbs(ch, 0)
			if err != nil {
				b.Fatal(err)
			}
			for i, v := range lp.MustRead() {
				ch.samples[i].LogProbs[ch.steps[i][0]] = v
			}
			s.Close()
		}
	})
	unet.Checkpointing = !tr.cfg.NoGradCheckpointing
	defer func() { unet.Checkpointing = false }()
	if err := e.Sync(); err != nil {
		b.Fatal(err)
	}
	e.Trim()
	e.ResetPeaks()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for _, ch := range chunks {
			if _, err := tr.accumulate(ch, 0, float64(len(ch.samples))/float64(bs)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := tr.step(); err != nil {
			b.Fatal(err)
		}
		// Back to the sampling policy so that every iteration sees ratio 1.
		for _, p := range tr.Params() {
			if p.Dim(1) == tr.cfg.Rank {
				p.Write(make([]float32, p.Len()))
			}
		}
	}
	if err := e.Sync(); err != nil {
		b.Fatal(err)
	}
	secs := time.Since(start).Seconds() / float64(b.N)
	ms := e.MemStats()
	b.ReportMetric(secs, "s/update")
	b.ReportMetric(float64(ms.PeakTotal)/(1<<30), "peak-GiB")
	verdict := "within"
	if ms.PeakTotal > memoryBudget {
		verdict = "OVER"
	}
	fmt.Fprintf(os.Stderr, "DDPOStep %s, %s: latent %dx%d (images %dx%d), batch %d in micro-batches of %d (U-Net batch %d with CFG), %.3f s per update\n",
		c.Name, e.Info.Name, lat, lat, 8*lat, 8*lat, bs, min(bs, tr.cfg.MicroBatch), 2*min(bs, tr.cfg.MicroBatch), secs)
	fmt.Fprintf(os.Stderr, "  peak live %.2f GiB, %s the 8 GiB budget; peaks by category:", float64(ms.PeakTotal)/(1<<30), verdict)
	for cat := gpu.Activations; cat <= gpu.Scratch; cat++ {
		fmt.Fprintf(os.Stderr, " %s %.2f GiB", cat, float64(ms.Peak[cat])/(1<<30))
	}
	fmt.Fprintf(os.Stderr, "; device peak (with the pool's cache) %.2f GiB\n", float64(ms.PeakDevice)/(1<<30))
}
