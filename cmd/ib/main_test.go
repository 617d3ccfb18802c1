package main

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

func fixtures(t *testing.T) string {
	t.Helper()
	return filepath.Join(testenv.Fixtures(t), "sd-tiny")
}

// needGPU skips only when there is no adapter at all.
func needGPU(t *testing.T) {
	t.Helper()
	e, err := gpu.Open(gpu.Options{})
	if errors.Is(err, gpu.ErrNoAdapter) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
}

// ib runs the command line in-process.
func ib(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// TestReference_fixtures runs every component through `ib reference` on
// the fixtures' inputs and compares the written outputs with the
// reference (max abs error <= 1e-4 max(1, absmax)).
func TestReference_fixtures(t *testing.T) {
	needGPU(t)
	fx := fixtures(t)
	model := filepath.Join(fx, "diffusers")
	for _, c := range []struct {
		comp, ref string
		keys      []string
	}{
		{"text_encoder", "text_encoder.safetensors", []string{"out/last_hidden_state", "out/pooler_output", "out/hidden_states_penultimate"}},
		{"unet", "unet.safetensors", []string{"out/noise_pred"}},
		{"vae_encode", "vae.safetensors", []string{"out/mean", "out/logvar"}},
		{"vae_decode", "vae.safetensors", []string{"out/decoded"}},
	} {
		in := filepath.Join(fx, "ref", c.ref)
		out := filepath.Join(t.TempDir(), c.comp+".safetensors")
		code, stdout, stderr := ib(t, "reference", "--model", model, "--component", c.comp, "--in", in, "--out", out)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c.comp, code, stderr)
		}
		if !strings.Contains(stdout, out) {
			t.Errorf("%s: stdout %q", c.comp, stdout)
		}
		for _, k := range c.keys {
			compareKey(t, c.comp, out, k, in, k)
		}
	}
}

// compareKey checks tensor gotKey of file got against wantKey of file
// want: same shape, max abs error <= 1e-4 max(1, absmax).
func compareKey(t *testing.T, what, got, gotKey, want, wantKey string) {
	t.Helper()
	gf, err := safetensors.Open(got)
	if err != nil {
		t.Fatal(err)
	}
	defer gf.Close()
	wf, err := safetensors.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	g, gi, err := gf.Float32(gotKey)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	w, wi, err := wf.Float32(wantKey)
	if err != nil {
		t.Fatal(err)
	}
	if !equalInts(gi.Shape, wi.Shape) {
		t.Fatalf("%s %s: shape %v, want %v", what, gotKey, gi.Shape, wi.Shape)
	}
	absmax, worst := 0.0, 0.0
	for i := range w {
		absmax = math.Max(absmax, math.Abs(float64(w[i])))
		d := math.Abs(float64(g[i]) - float64(w[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		worst = math.Max(worst, d)
	}
	if tol := 1e-4 * math.Max(1, absmax); worst > tol {
		t.Errorf("%s %s vs %s: max abs error %.3g > %.3g", what, gotKey, wantKey, worst, tol)
	} else {
		t.Logf("%s %s vs %s: max abs error %.2g (absmax %.3g)", what, gotKey, wantKey, worst, absmax)
	}
}

// TestReference_lora applies the fixture LoRA files through --lora and
// compares with the fixtures' noise predictions (kohya: alpha/rank = 0.5;
// diffusers: 1; a :SCALE suffix multiplies the file's scale).
func TestReference_lora(t *testing.T) {
	needGPU(t)
	fx := fixtures(t)
	model := filepath.Join(fx, "diffusers")
	in := filepath.Join(fx, "ref", "unet_lora.safetensors")
	// The LoRA at scale 0 must give the base model's prediction.
	base := filepath.Join(t.TempDir(), "base.safetensors")
	if code, _, stderr := ib(t, "reference", "--model", model, "--component", "unet", "--in", in, "--out", base); code != 0 {
		t.Fatalf("base: exit %d: %s", code, stderr)
	}
	for _, c := range []struct{ lora, wantFile, want string }{
		{"lora_kohya.safetensors", in, "out/noise_pred_lora_kohya"},
		{"lora_diffusers.safetensors:1", in, "out/noise_pred_lora_diffusers"},
		{"lora_diffusers.safetensors:0", base, "out/noise_pred"},
	} {
		out := filepath.Join(t.TempDir(), "o.safetensors")
		code, _, stderr := ib(t, "reference", "--model", model, "--component", "unet", "--in", in, "--out", out,
			"--lora", filepath.Join(fx, "lora", c.lora))
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c.lora, code, stderr)
		}
		if !strings.Contains(stderr, "128 U-Net") {
			t.Errorf("%s: stderr %q", c.lora, stderr)
		}
		compareKey(t, c.lora, out, "out/noise_pred", c.wantFile, c.want)
	}
	// A U-Net-only LoRA leaves the text encoder as it was.
	in = filepath.Join(fx, "ref", "text_encoder.safetensors")
	out := filepath.Join(t.TempDir(), "te.safetensors")
	code, _, stderr := ib(t, "reference", "--model", model, "--component", "text_encoder", "--in", in, "--out", out,
		"--lora", filepath.Join(fx, "lora", "lora_kohya.safetensors"))
	if code != 0 {
		t.Fatalf("text_encoder: exit %d: %s", code, stderr)
	}
	compareKey(t, "text_encoder+lora", out, "out/last_hidden_state", in, "out/last_hidden_state")
}

// TestReference_singleFile runs the single-file checkpoint (fp16-rounded
// weights) with the diffusers folder's configs, with f32 and packed
// binary16 weights, plus the kohya LoRA.
func TestReference_singleFile(t *testing.T) {
	needGPU(t)
	fx := fixtures(t)
	model := filepath.Join(fx, "single-file", "sd-tiny.safetensors")
	cfg := filepath.Join(fx, "diffusers")
	for _, c := range []struct {
		in, want string
		flags    []string
	}{
		{"unet.safetensors", "out/noise_pred_fp16w", nil},
		{"unet.safetensors", "out/noise_pred_fp16w", []string{"--f16-weights"}},
	} {
		in := filepath.Join(fx, "ref", c.in)
		out := filepath.Join(t.TempDir(), "o.safetensors")
		args := append([]string{"reference", "--model", model, "--config", cfg, "--component", "unet", "--in", in, "--out", out}, c.flags...)
		code, _, stderr := ib(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.flags, code, stderr)
		}
		compareKey(t, fmt.Sprint("single-file ", c.flags), out, "out/noise_pred", in, c.want)
	}
	in := filepath.Join(fx, "ref", "text_encoder.safetensors")
	out := filepath.Join(t.TempDir(), "te.safetensors")
	code, _, stderr := ib(t, "reference", "--model", model, "--config", cfg, "--component", "text_encoder", "--in", in, "--out", out)
	if code != 0 {
		t.Fatalf("text_encoder: exit %d: %s", code, stderr)
	}
	compareKey(t, "single-file text_encoder", out, "out/last_hidden_state", in, "out/last_hidden_state_fp16w")
}

func TestLoraFlag(t *testing.T) {
	for _, c := range []struct {
		in, path string
		scale    float32
	}{
		{"a.safetensors", "a.safetensors", 1},
		{"a.safetensors:0.5", "a.safetensors", 0.5},
		{"C:/x/a.safetensors", "C:/x/a.safetensors", 1},
		{"dir:1/a.safetensors:-2", "dir:1/a.safetensors", -2},
	} {
		var f loraFlag
		if err := f.Set(c.in); err != nil || f.path != c.path || f.scale != c.scale {
			t.Errorf("Set(%q): %q %g %v; want %q %g", c.in, f.path, f.scale, err, c.path, c.scale)
		}
	}
	var f loraFlag
	if f.Set(":2") == nil {
		t.Error("Set(\":2\") accepted an empty file name")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGenerate_writesPNG generates one 64x64 image in two steps and reads
// the PNG and its parameter chunks back.
func TestGenerate_writesPNG(t *testing.T) {
	needGPU(t)
	model := filepath.Join(fixtures(t), "diffusers")
	dir := t.TempDir()
	code, stdout, stderr := ib(t, "generate", "--model", model, "--prompt", "a photo of sks dog", "--negative", "blurry",
		"--steps", "2", "--guidance", "5", "--seed", "42", "--width", "64", "--height", "64", "--sampler", "ddim", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"step 1/2", "step 2/2", "it/s", "ETA", "peak GPU memory"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	path := strings.TrimSpace(stdout)
	if filepath.Dir(path) != dir || filepath.Base(path) != "42-a-photo-of-sks-dog.png" {
		t.Fatalf("stdout %q", stdout)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() != 64 || r.Dy() != 64 {
		t.Errorf("image %v", r)
	}
	text, err := generate.ReadPNGText(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range text {
		got[e.Key] = e.Value
	}
	for k, v := range map[string]string{
		generate.KeyPrompt: "a photo of sks dog", generate.KeyNegative: "blurry", generate.KeySeed: "42",
		generate.KeySteps: "2", generate.KeyGuidance: "5", generate.KeySampler: "ddim", generate.KeySize: "64x64",
		generate.KeyModel: "diffusers",
	} {
		if got[k] != v {
			t.Errorf("text %q = %q, want %q", k, got[k], v)
		}
	}
}

// TestGenerate_singleFileLoRA generates from the single-file checkpoint
// with a LoRA; the PNG names the checkpoint file.
func TestGenerate_singleFileLoRA(t *testing.T) {
	needGPU(t)
	fx := fixtures(t)
	dir := t.TempDir()
	code, stdout, stderr := ib(t, "generate", "--model", filepath.Join(fx, "single-file", "sd-tiny.safetensors"),
		"--config", filepath.Join(fx, "diffusers"), "--lora", filepath.Join(fx, "lora", "lora_kohya.safetensors:0.8"),
		"--prompt", "a dog", "--steps", "1", "--seed", "7", "--width", "64", "--height", "64", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"single-file", "128 U-Net", "x0.8"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	f, err := os.Open(strings.TrimSpace(stdout))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	text, err := generate.ReadPNGText(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range text {
		if e.Key == generate.KeyModel && e.Value != "sd-tiny.safetensors" {
			t.Errorf("model %q", e.Value)
		}
	}
}

// TestRun_errors: bad usage and bad inputs are reported, not panics.
func TestRun_errors(t *testing.T) {
	fx := fixtures(t)
	model := filepath.Join(fx, "diffusers")
	in := filepath.Join(fx, "ref", "unet.safetensors")
	out := filepath.Join(t.TempDir(), "o.safetensors")
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "usage"},
		{[]string{"paint"}, 2, "unknown command"},
		{[]string{"reference", "--model", model, "--in", in, "--out", out}, 2, "--component is required"},
		{[]string{"reference", "--model", model, "--component", "clip", "--in", in, "--out", out}, 2, "unknown component"},
		{[]string{"reference", "--model", model, "--component", "unet", "--in", in}, 2, "--in and --out"},
		{[]string{"reference", "--model", model, "--component", "vae_decode", "--in", in, "--out", out, "--lora", "x.safetensors"}, 2, "--lora applies to the unet and text_encoder"},
		{[]string{"reference", "--model", model, "--component", "unet", "--in", in, "--out", out, "--lora", "/nonexistent-a.safetensors", "--lora", "b.safetensors"}, 1, "/nonexistent-a.safetensors"},
		{[]string{"reference", "--model", model, "--component", "unet", "--in", in, "--out", out, "--lora", "/nonexistent-lora.safetensors:0.5"}, 1, "/nonexistent-lora.safetensors"},
		{[]string{"reference", "--model", model, "--component", "unet", "--in", "/nonexistent.safetensors", "--out", out}, 1, "/nonexistent.safetensors"},
		{[]string{"generate", "--prompt", "x"}, 2, "--model is required"},
		{[]string{"generate", "--model", model, "--width", "100"}, 2, "multiples of 8"},
		{[]string{"generate", "--model", model, "--sampler", "plms"}, 2, "unknown sampler"},
		{[]string{"generate", "--model", model, "--seed", "-3"}, 2, "--seed"},
		{[]string{"generate", "--model", model, "--bogus"}, 2, "bogus"},
	} {
		code, _, stderr := ib(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("ib %v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.msg)
		}
	}
}

// TestReference_badInputs: missing tensors, wrong shapes and folders that
// are not models get errors naming the file.
func TestReference_badInputs(t *testing.T) {
	needGPU(t)
	fx := fixtures(t)
	model := filepath.Join(fx, "diffusers")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.safetensors")
	if err := safetensors.WriteFile(bad, map[string]safetensors.Tensor{
		"in/latents":   safetensors.F32Tensor(make([]float32, 2*4*6*6), 2, 4, 6, 6),
		"in/timesteps": safetensors.F32Tensor([]float32{1, 2}, 2),
		"in/image":     safetensors.F32Tensor(make([]float32, 4*8*8), 1, 4, 8, 8),
	}, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "o.safetensors")
	for _, c := range []struct {
		comp, model, msg string
	}{
		{"unet", model, "multiples of 8"},
		{"vae_encode", model, "in/image has shape [1 4 8 8]"},
		{"vae_decode", model, `no tensor "in/latent"`},
		{"text_encoder", model, "in/input_ids"},
		{"unet", dir, "not a diffusers pipeline folder"},
		{"unet", filepath.Join(fx, "lora", "lora_kohya.safetensors"), "this is a LoRA file"},
	} {
		code, _, stderr := ib(t, "reference", "--model", c.model, "--component", c.comp, "--in", bad, "--out", out)
		if code != 1 || !strings.Contains(stderr, c.msg) {
			t.Errorf("%s on %s: exit %d, stderr %q; want mention of %q", c.comp, filepath.Base(c.model), code, stderr, c.msg)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("an output file was written for bad inputs")
	}
}
