package bert

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Close()
	if code != 0 {
		panic(code)
	}
}

func fixture(t *testing.T, rel string) string {
	return filepath.Join(testenv.Fixtures(t), "rewards-tiny", rel)
}

// loadEncoder loads ImageReward's text encoder from the fixture.
func loadEncoder(t *testing.T, e *gpu.Engine) *Encoder {
	t.Helper()
	f, err := safetensors.Open(fixture(t, "imagereward/ImageReward.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := nn.NewWeights(e)
	t.Cleanup(w.Release)
	if _, err := w.Load(f, func(k string) (string, bool) {
		rest, ok := strings.CutPrefix(k, "blip.text_encoder.")
		return rest, ok && !strings.HasSuffix(k, "position_ids")
	}); err != nil {
		t.Fatal(err)
	}
	cfg, err := ReadConfig(fixture(t, "imagereward/med_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Cfg; c.Hidden != 32 || c.Layers != 2 || c.Heads != 4 || c.Intermediate != 37 || c.Vocab != 30524 ||
		c.EncoderWidth != 32 || !c.CrossAttention || c.Eps != 1e-12 || c.MaxPositions != 512 {
		t.Errorf("config %+v", c)
	}
	return m
}

func readIDs(t *testing.T, f *safetensors.File, key string) [][]int32 {
	t.Helper()
	v, info, err := f.Int64(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]int32, info.Shape[0])
	for i := range out {
		for j := 0; j < info.Shape[1]; j++ {
			out[i] = append(out[i], int32(v[i*info.Shape[1]+j]))
		}
	}
	return out
}

func maxErr(t *testing.T, key string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", key, len(got), len(want))
	}
	absmax, worst := 0.0, 0.0
	for i := range want {
		absmax = math.Max(absmax, math.Abs(float64(want[i])))
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}
	if tol := 1e-4 * math.Max(1, absmax); worst > tol || math.IsNaN(worst) {
		t.Errorf("%s: max abs error %g > %g", key, worst, tol)
	} else {
		t.Logf("%s: max abs error %.2g (absmax %.3g)", key, worst, absmax)
	}
}

// TestEncoder_matchesReference runs the 3 prompts x 2 images of the
// fixture (row p*2+i) with the stored image embeddings as the
// cross-attention memory and checks every stored BERT activation.
func TestEncoder_matchesReference(t *testing.T) {
	e := testenv.Engine(t)
	m := loadEncoder(t, e)
	m.Taps = true
	ref, err := safetensors.Open(fixture(t, "ref/imagereward.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	ids, mask := readIDs(t, ref, "in/input_ids"), readIDs(t, ref, "in/attention_mask")
	img, info, err := ref.Float32("out/image_embeds") // [2, 17, 32]
	if err != nil {
		t.Fatal(err)
	}
	ni := len(img) / info.Shape[0]
	var pid, pmask [][]int32
	var pimg []float32
	for p := range ids {
		for i := 0; i < info.Shape[0]; i++ {
			pid, pmask = append(pid, ids[p]), append(pmask, mask[p])
			pimg = append(pimg, img[i*ni:(i+1)*ni]...)
		}
	}
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		out, err := m.Forward(pid, pmask, e.FromSlice(pimg, len(pid), info.Shape[1], info.Shape[2]))
		if err != nil {
			t.Fatal(err)
		}
		// Embeddings are per prompt: rows 0, 2, 4.
		emb := out.Embeddings.MustRead()
		l, d := len(ids[0]), m.Cfg.Hidden
		var per []float32
		for p := range ids {
			per = append(per, emb[(2*p)*l*d:(2*p+1)*l*d]...)
		}
		want, _, _ := ref.Float32("act/bert_embeddings")
		maxErr(t, "act/bert_embeddings", per, want)
		for key, got := range map[string]*gpu.Tensor{
			"act/bert_layer0_selfattn": out.SelfAttn[0], "act/bert_layer0_crossattn": out.CrossAttn[0],
			"act/bert_layer0": out.Layers[0], "out/text_last_hidden_state": out.Last,
		} {
			want, _, _ := ref.Float32(key)
			maxErr(t, key, got.MustRead(), want)
		}
	})
}

// TestEncoder_paddingIgnored: what sits under mask 0 cannot change the
// real positions' outputs (exp(-10000) underflows to zero).
func TestEncoder_paddingIgnored(t *testing.T) {
	e := testenv.Engine(t)
	m := loadEncoder(t, e)
	ids := [][]int32{{101, 1037, 4937, 102, 0, 0, 0}, {101, 1037, 4937, 102, 2003, 7592, 999}}
	mask := [][]int32{{1, 1, 1, 1, 0, 0, 0}, {1, 1, 1, 1, 0, 0, 0}}
	img := make([]float32, 2*5*32)
	for i := range img {
		img[i] = float32(math.Sin(float64(i)))
	}
	for i := 5 * 32; i < len(img); i++ {
		img[i] = img[i-5*32]
	}
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		out, err := m.Forward(ids, mask, e.FromSlice(img, 2, 5, 32))
		if err != nil {
			t.Fatal(err)
		}
		h := out.Last.MustRead()
		n := 4 * 32 // the four real positions
		worst := 0.0
		for i := 0; i < n; i++ {
			worst = math.Max(worst, math.Abs(float64(h[i]-h[7*32+i])))
		}
		if worst > 1e-6 {
			t.Errorf("padding changed real positions by %g", worst)
		}
		// Bad inputs are errors, not panics.
		if _, err := m.Forward([][]int32{{101, 40000}}, [][]int32{{1, 1}}, nil); err == nil {
			t.Error("id 40000 accepted")
		}
		if _, err := m.Forward(ids, mask, e.Zeros(2, 5, 16)); err == nil {
			t.Error("16-wide image tokens accepted")
		}
		if _, err := m.Forward(ids, mask[:1], nil); err == nil {
			t.Error("mask rows mismatch accepted")
		}
	})
}
