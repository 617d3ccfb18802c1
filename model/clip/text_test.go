package clip

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// TestTextModel_matchesReference runs the sd-tiny CLIP text encoder on the
// reference ids and compares every output with transformers'.
func TestTextModel_matchesReference(t *testing.T) {
	e := testenv.Engine(t)
	fx := fixtures(t)
	dir := filepath.Join(fx, "sd-tiny", "diffusers", "text_encoder")
	wf, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	w := nn.NewWeights(e)
	if _, err := w.Load(wf, nn.Identity); err != nil {
		t.Fatal(err)
	}
	cfg, err := ReadTextConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewTextModel(w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := safetensors.Open(filepath.Join(fx, "sd-tiny", "ref", "text_encoder.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	raw, info, err := ref.Int64("in/input_ids")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([][]int32, info.Shape[0])
	for i := range ids {
		for j := 0; j < info.Shape[1]; j++ {
			ids[i] = append(ids[i], int32(raw[i*info.Shape[1]+j]))
		}
	}
	var out *TextOutput
	e.NoGrad(func() { out, err = m.Forward(ids) })
	if err != nil {
		t.Fatal(err)
	}
	for key, got := range map[string]*gpu.Tensor{
		"out/embeddings": out.Embeddings, "out/last_hidden_state": out.Last,
		"out/hidden_states_penultimate": out.Penultimate, "out/pooler_output": out.Pooled,
	} {
		want, wi, err := ref.Float32(key)
		if err != nil {
			t.Fatal(err)
		}
		g := got.MustRead()
		if len(g) != len(want) {
			t.Fatalf("%s: %d values %v, want %d %v", key, len(g), got.Shape(), len(want), wi.Shape)
		}
		absmax, worst := 0.0, 0.0
		for i := range want {
			absmax = math.Max(absmax, math.Abs(float64(want[i])))
			worst = math.Max(worst, math.Abs(float64(g[i]-want[i])))
		}
		if tol := 1e-4 * math.Max(1, absmax); worst > tol {
			t.Errorf("%s: max abs error %g > %g", key, worst, tol)
		} else {
			t.Logf("%s: max abs error %.2g (absmax %.3g)", key, worst, absmax)
		}
	}
}
