package dreambooth

import (
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sd"
)

// TestEstimateMemory_matchesTinyStep measures one LoRA training step of the
// tiny U-Net at 16x16 latents (batch 2, checkpointing on and off) and
// checks the estimate of what the step adds to the loaded weights
// (adapter gradients, AdamW state, activations) against the engine's peak:
// within a factor of 2.
func TestEstimateMemory_matchesTinyStep(t *testing.T) {
	e := testenv.Engine(t)
	p := loadTiny(t, e)
	u := p.UNet
	for _, ckpt := range []bool{true, false} {
		cfg := Config{ClassNoun: "dog", Resolution: 128, NoGradientCheckpointing: !ckpt}.WithDefaults()
		a, err := lora.New(u.W, TargetModules(u.W, cfg), cfg.Rank, cfg.Alpha, 1)
		if err != nil {
			t.Fatal(err)
		}
		set := &lora.Set{UNet: a}
		tg := lora.Targets{UNet: u.W}
		set.Attach(tg)
		e.Sync()
		base := e.MemStats().LiveTotal
		e.ResetPeaks()
		opt := e.NewAdamW(set.Params(), 1e-4)
		u.Checkpointing = ckpt
		s := e.Scope()
		x := make([]float32, 2*4*16*16)
		for i := range x {
			x[i] = float32(i%7) - 3
		}
		ctx := make([]float32, 2*77*u.Cfg.CrossAttentionDim)
		pred := u.Forward(e.FromSlice(x, 2, 4, 16, 16), e.FromSlice([]float32{100, 700}, 2), e.FromSlice(ctx, 2, 77, u.Cfg.CrossAttentionDim))
		loss := e.MSELoss(pred, e.Zeros(2, 4, 16, 16))
		if err := e.Backward(loss); err != nil {
			t.Fatal(err)
		}
		opt.Step()
		e.Sync()
		measured := e.MemStats().PeakTotal - base
		s.Close()
		opt.Release()
		u.Checkpointing = false
		lora.Detach(tg)
		set.Release()

		est := EstimateMemory(u.Cfg, cfg, 0)
		added := est.Gradients + est.Optimizer + est.Activations
		t.Logf("checkpointing %v: measured %s, estimated %s (%s; %d trained values)", ckpt, gib(measured), gib(added), est, est.Trainable)
		if r := float64(added) / float64(measured); r < 0.5 || r > 2 {
			t.Errorf("checkpointing %v: estimate %s is %.2fx the measured %s", ckpt, gib(added), r, gib(measured))
		}
		if want := int64(52480); est.Trainable != want { // 128 projections of the tiny U-Net at rank 4
			t.Errorf("%d trained values, want %d", est.Trainable, want)
		}
	}
}

// TestEstimateMemory_sd15 prints the SD 1.5 figures at 512 px (the 8 GB
// target) and checks their order: LoRA fits with room to spare, full
// fine-tuning in f32 does not.
func TestEstimateMemory_sd15(t *testing.T) {
	u := sd.SD15UNetConfig()
	lo := EstimateMemory(u, Config{ClassNoun: "dog"}, 0)
	full := EstimateMemory(u, Config{ClassNoun: "dog", Mode: ModeFull}, 0)
	t.Logf("SD 1.5, 512 px, batch 2, f32 U-Net only: LoRA %s total (%s; %d trained); full %s total (%s)", gib(lo.Total), lo, lo.Trainable, gib(full.Total), full)
	// 859.5 M U-Net parameters; rank-4 attention LoRA of SD 1.5 has 797,184.
	if lo.Trainable != 797184 {
		t.Errorf("LoRA trains %d values, want 797184", lo.Trainable)
	}
	if full.Trainable != 859520964 {
		t.Errorf("full trains %d values, want 859520964", full.Trainable)
	}
	if lo.Total > 8<<30 || full.Total < 8<<30 {
		t.Errorf("LoRA %s, full %s: want LoRA under 8 GiB and full over", gib(lo.Total), gib(full.Total))
	}
	if b, err := ParseBytes("8GiB"); err != nil || b != 8<<30 {
		t.Errorf("ParseBytes(8GiB) = %d, %v", b, err)
	}
	if b, err := ParseBytes("1500 MiB"); err != nil || b != 1500<<20 {
		t.Errorf("ParseBytes(1500 MiB) = %d, %v", b, err)
	}
	if _, err := ParseBytes("lots"); err == nil || !strings.Contains(err.Error(), "8GiB") {
		t.Errorf("ParseBytes(lots): %v", err)
	}
}
