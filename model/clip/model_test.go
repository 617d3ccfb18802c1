package clip

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/imgproc"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// clipRef opens rewards-tiny/ref/clip.safetensors.
func clipRef(t *testing.T) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(testenv.Fixtures(t), "rewards-tiny", "ref", "clip.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func refFloats(t *testing.T, f *safetensors.File, key string) ([]float32, []int) {
	t.Helper()
	v, info, err := f.Float32(key)
	if err != nil {
		t.Fatal(err)
	}
	return v, info.Shape
}

// checkClose compares got with the reference key; tol < 0 means the
// README's activation tolerance 1e-4 * max(1, absmax).
func checkClose(t *testing.T, f *safetensors.File, key string, got []float32, tol float64) {
	t.Helper()
	want, shape := refFloats(t, f, key)
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d %v", key, len(got), len(want), shape)
	}
	absmax, worst := 0.0, 0.0
	for i := range want {
		absmax = math.Max(absmax, math.Abs(float64(want[i])))
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}
	if tol < 0 {
		tol = 1e-4 * math.Max(1, absmax)
	}
	if worst > tol {
		t.Errorf("%s: max abs error %g > %g", key, worst, tol)
	} else {
		t.Logf("%s: max abs error %.2g (tolerance %.2g)", key, worst, tol)
	}
}

func flatten(rows [][]float32) []float32 {
	var out []float32
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

func loadTiny(t *testing.T, e *gpu.Engine, config string) *Model {
	t.Helper()
	dir := filepath.Join(testenv.Fixtures(t), "rewards-tiny", "clip")
	opts := LoadOptions{}
	if config != "" {
		opts.Config = filepath.Join(dir, config)
	}
	m, err := LoadModel(e, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Release)
	return m
}

// TestCLIPModel_matchesReference runs both towers of the tiny CLIPModel
// (quick-GELU config and the gelu config over the same weights) on the
// fixture's stored inputs and checks every stored activation and output.
func TestCLIPModel_matchesReference(t *testing.T) {
	e := testenv.Engine(t)
	ref := clipRef(t)
	pix, psh := refFloats(t, ref, "in/pixel_values")
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
	// The model's tokenisation of the prompts is the stored ids.
	var prompts []string
	if err := json.Unmarshal([]byte(ref.Metadata["prompts"]), &prompts); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadHF(filepath.Join(testenv.Fixtures(t), "sd-tiny", "diffusers", "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}

	for _, variant := range []struct{ config, prefix string }{{"", "out/"}, {"config_gelu.json", "gelu/"}} {
		m := loadTiny(t, e, variant.config)
		if variant.prefix == "out/" {
			c := m.Cfg
			if c.ProjectionDim != 16 || c.Vision.ImageSize != 32 || c.Vision.PatchSize != 8 || c.Vision.Layers != 2 ||
				c.Vision.Heads != 4 || c.Vision.Intermediate != 37 || c.Text.Heads != 4 || c.Vision.HiddenAct != "quick_gelu" {
				t.Errorf("config %+v", c)
			}
			if m.Preprocess != imgproc.CLIP(32) {
				t.Errorf("preprocess %+v", m.Preprocess)
			}
			got, err := m.Tokenize(tok, prompts)
			if err != nil {
				t.Fatal(err)
			}
			for i := range ids {
				for j := range ids[i] {
					if got[i][j] != ids[i][j] {
						t.Fatalf("prompt %d token %d: %d, want %d", i, j, got[i][j], ids[i][j])
					}
				}
			}
		} else if m.Cfg.Vision.HiddenAct != "gelu" || m.Cfg.Text.HiddenAct != "gelu" {
			t.Fatalf("config_gelu.json read as %q/%q", m.Cfg.Vision.HiddenAct, m.Cfg.Text.HiddenAct)
		}
		var vo *VisionOutput
		var img, txt *gpu.Tensor
		e.NoGrad(func() {
			x := e.FromSlice(pix, psh...)
			if vo, err = m.Vision.Forward(x); err != nil {
				return
			}
			if img, err = m.ImageFeatures(x); err != nil {
				return
			}
			txt, err = m.TextFeatures(ids)
		})
		if err != nil {
			t.Fatal(err)
		}
		if variant.prefix == "out/" {
			checkClose(t, ref, "act/vision_embeddings", vo.Embeddings.MustRead(), -1)
			checkClose(t, ref, "act/vision_pre_layrnorm", vo.PreLN.MustRead(), -1)
			checkClose(t, ref, "out/vision_last_hidden_state", vo.Last.MustRead(), -1)
			checkClose(t, ref, "out/vision_pooler_output", vo.Pooled.MustRead(), -1)
			if got, want := m.LogitScaleExp(), float32(100); math.Abs(float64(got-want)) > 1e-3 {
				t.Errorf("exp(logit_scale) = %g, want %g", got, want)
			}
			checkClose(t, ref, "out/logit_scale_exp", []float32{m.LogitScaleExp()}, 1e-3)
		}
		for _, x := range []*gpu.Tensor{vo.Embeddings, vo.PreLN, vo.Last, vo.Pooled} {
			x.Release()
		}
		checkClose(t, ref, variant.prefix+"image_embeds_unnormalized", img.MustRead(), -1)
		checkClose(t, ref, variant.prefix+"text_embeds_unnormalized", txt.MustRead(), -1)
		iv, tv := Normalized(img.MustRead(), 2), Normalized(txt.MustRead(), 3)
		img.Release()
		txt.Release()
		checkClose(t, ref, variant.prefix+"image_embeds", flatten(iv), 1e-5)
		checkClose(t, ref, variant.prefix+"text_embeds", flatten(tv), 1e-5)
		var cos, logits, probs []float32
		scale := float64(m.LogitScaleExp())
		for p := range tv {
			var row []float64
			for i := range iv {
				c := Dot(tv[p], iv[i])
				cos = append(cos, float32(c))
				logits = append(logits, float32(scale*c))
				row = append(row, scale*c)
			}
			mx, s := math.Inf(-1), 0.0
			for _, l := range row {
				mx = math.Max(mx, l)
			}
			for _, l := range row {
				s += math.Exp(l - mx)
			}
			for _, l := range row {
				probs = append(probs, float32(math.Exp(l-mx)/s))
			}
		}
		checkClose(t, ref, variant.prefix+"cosine", cos, 1e-5)
		checkClose(t, ref, variant.prefix+"logits_per_text", logits, 1e-3)
		checkClose(t, ref, variant.prefix+"pickscore_probs", probs, 1e-5)
	}
}

// TestEmbed_endToEnd: EmbedPixels/EmbedTexts (the CPU-facing API) give the
// reference embeddings from the images themselves (preprocessed with the
// model's preprocessor config).
func TestEmbed_endToEnd(t *testing.T) {
	e := testenv.Engine(t)
	ref := clipRef(t)
	m := loadTiny(t, e, "")
	imgs, err := safetensors.Open(filepath.Join(testenv.Fixtures(t), "rewards-tiny", "ref", "images.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer imgs.Close()
	var pix []float32
	for _, key := range []string{"image0_u8", "image1_u8"} {
		v, info, err := imgs.Int64(key)
		if err != nil {
			t.Fatal(err)
		}
		h, w := info.Shape[1], info.Shape[2]
		rgb := imgproc.NewRGB8(w, h)
		for c := 0; c < 3; c++ {
			for i := 0; i < h*w; i++ {
				rgb.Pix[3*i+c] = uint8(v[c*h*w+i])
			}
		}
		p, err := m.Preprocess.Apply(rgb.NRGBA())
		if err != nil {
			t.Fatal(err)
		}
		pix = append(pix, p...)
	}
	iv, err := m.EmbedPixels(pix, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkClose(t, ref, "out/image_embeds", flatten(iv), 1e-5)
	tok, err := LoadHF(filepath.Join(testenv.Fixtures(t), "sd-tiny", "diffusers", "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	var prompts []string
	json.Unmarshal([]byte(ref.Metadata["prompts"]), &prompts)
	tv, err := m.EmbedTexts(tok, prompts)
	if err != nil {
		t.Fatal(err)
	}
	checkClose(t, ref, "out/text_embeds", flatten(tv), 1e-5)
	if _, err := m.EmbedTexts(nil, prompts); err == nil || !strings.Contains(err.Error(), "tokenizer") {
		t.Errorf("no tokenizer: error %v", err)
	}
	if _, err := m.EmbedPixels(pix[:10], 2); err == nil {
		t.Error("short pixels: no error")
	}
}

func TestLoadModel_errors(t *testing.T) {
	e := testenv.Engine(t)
	dir := t.TempDir()
	if _, err := LoadModel(e, dir, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("empty folder: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{}`), 0o644)
	if _, err := LoadModel(e, dir, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("no weights: %v", err)
	}
	// A text encoder alone is not a CLIPModel.
	te := filepath.Join(testenv.Fixtures(t), "sd-tiny", "diffusers", "text_encoder", "model.safetensors")
	b, err := os.ReadFile(te)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "model.safetensors"), b, 0o644)
	_, err = LoadModel(e, dir, LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "vision_model") || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("text encoder only: %v", err)
	}
}

// TestLoadModel_f16: binary16 weights give the same cosines to about the
// precision of binary16 (a loose check that packing covers both towers).
func TestLoadModel_f16(t *testing.T) {
	e := testenv.Engine(t)
	ref := clipRef(t)
	m, err := LoadModel(e, filepath.Join(testenv.Fixtures(t), "rewards-tiny", "clip"), LoadOptions{F16Weights: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	if !m.W.Packed("vision_model.embeddings.patch_embedding.weight") || m.W.Packed("vision_model.embeddings.class_embedding") {
		t.Error("packing: want matrices and kernels packed, vectors not")
	}
	pix, _ := refFloats(t, ref, "in/pixel_values")
	iv, err := m.EmbedPixels(pix, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkClose(t, ref, "out/image_embeds", flatten(iv), 1e-2)
}
