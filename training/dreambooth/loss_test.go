package dreambooth

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/lora"
)

// TestLoss_matchesReference checks the trainer's loss assembly (DDPM
// noising at integer timesteps, U-Net with LoRA, subject + prior halves)
// against ref/grads.safetensors: with prior weight 1 the DreamBooth loss is
// the sum of the two halves' means, i.e. twice the fixture's batch mean,
// and its LoRA gradients are twice the fixture's (README tolerance: 1e-4
// relative for the loss, 1e-3 of absmax for gradients).
func TestLoss_matchesReference(t *testing.T) {
	e := testenv.Engine(t)
	p := loadTiny(t, e)
	u := p.UNet
	tg := lora.Targets{UNet: u.W}
	l, err := lora.Load(filepath.Join(testenv.Fixtures(t), "sd-tiny", "lora", "lora_kohya.safetensors"), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	l.SetRequiresGrad(true)
	l.Attach(tg)
	defer lora.Detach(tg)
	defer gpu.ZeroGrad(l.Params()...)

	f, get := testenv.Ref(t, e, "grads.safetensors")
	ts, _, err := f.Int64("in/timesteps")
	if err != nil {
		t.Fatal(err)
	}
	s := e.Scope()
	defer s.Close()
	loss, err := dreamboothLoss(u, p.Schedule, get("in/z0"), get("in/eps"), []int{int(ts[0]), int(ts[1])}, get("in/encoder_hidden_states"), 1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := loss.Item()
	ref, _, _ := f.Float32("out/loss")
	d := math.Abs(float64(got) - 2*float64(ref[0]))
	t.Logf("loss %v, reference 2 x %v: error %.3g", got, ref[0], d)
	if d > 1e-4*2*float64(ref[0]) {
		t.Errorf("loss %v, want 2 x %v (error %.3g)", got, ref[0], d)
	}
	if err := e.Backward(loss); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, key := range f.Names() {
		name, ok := strings.CutPrefix(key, "grad/")
		if !ok || !strings.Contains(name, ".lora_layer.") {
			continue
		}
		mod, part, _ := strings.Cut(name, ".lora_layer.")
		g := l.UNet[mod].Down.Grad
		if part == "up.weight" {
			g = l.UNet[mod].Up.Grad
		}
		want, _, _ := f.Float32(key)
		vals := g.MustRead()
		worst, absmax := 0.0, 0.0
		for i := range want {
			absmax = max(absmax, math.Abs(2*float64(want[i])))
			worst = max(worst, math.Abs(float64(vals[i])-2*float64(want[i])))
		}
		t.Logf("%s: error %.3g of absmax %.3g", key, worst, absmax)
		if worst > 1e-3*absmax {
			t.Errorf("%s: error %.3g, absmax %.3g", key, worst, absmax)
		}
		checked++
	}
	if checked != 8 {
		t.Errorf("checked %d LoRA gradients, the fixture has 8", checked)
	}
}
