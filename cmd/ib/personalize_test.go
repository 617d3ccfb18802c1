package main

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// subjectFolder writes two 64x64 subject pictures plus a text file, a
// truncated JPEG and an empty PNG.
func subjectFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for i, c := range []color.RGBA{{220, 30, 30, 255}, {200, 60, 40, 255}} {
		img := image.NewRGBA(image.Rect(0, 0, 64, 80))
		for y := 0; y < 80; y++ {
			for x := 0; x < 64; x++ {
				if (x-20-8*i)*(x-20-8*i)+(y-40)*(y-40) < 300 {
					img.SetRGBA(x, y, c)
				} else {
					img.SetRGBA(x, y, color.RGBA{20, 40, 200, 255})
				}
			}
		}
		var b bytes.Buffer
		png.Encode(&b, img)
		os.WriteFile(filepath.Join(dir, string(rune('a'+i))+".png"), b.Bytes(), 0o644)
	}
	var j bytes.Buffer
	jpeg.Encode(&j, image.NewRGBA(image.Rect(0, 0, 64, 64)), nil)
	os.WriteFile(filepath.Join(dir, "broken.jpg"), j.Bytes()[:j.Len()/2], 0o644)
	os.WriteFile(filepath.Join(dir, "empty.png"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("my dog\n"), 0o644)
	return dir
}

// TestPersonalize_loraEndToEnd trains a LoRA on the tiny model for 3 steps
// (bad files named and skipped), extends the run to 4 steps by resuming
// from its checkpoint, and generates with the LoRA (weighted, together
// with the fixture LoRA).
func TestPersonalize_loraEndToEnd(t *testing.T) {
	needGPU(t)
	fx := fixtures(t)
	model := filepath.Join(fx, "diffusers")
	images := subjectFolder(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "sks-dog.safetensors")
	args := []string{"personalize", "--model", model, "--images", images, "--class", "dog", "--description", "red",
		"--resolution", "64", "--class-images", "2", "--class-steps", "2", "--seed", "5", "--lr", "1e-3",
		"--validate-every", "3", "--validation-steps", "2", "--out", out}
	code, stdout, stderr := ib(t, append(args, "--steps", "3")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"skipped " + filepath.Join(images, "broken.jpg") + ": truncated or damaged jpeg",
		"skipped " + filepath.Join(images, "empty.png") + ": empty file",
		"skipped " + filepath.Join(images, "notes.txt") + ": not an image",
		"2 subject images", `prompt "a sks red dog"`, "class images: step 2/2", "step 3/3 (100%)  avg", "loss",
		"validation image " + filepath.Join(out+".work", "validation", "step-000003-0.png"), "checkpoint ", "done: 3 steps",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.TrimSpace(stdout) != out {
		t.Errorf("stdout %q", stdout)
	}
	checkLoRAFile(t, out, 3)

	// Raise --steps: the run resumes from step 3 and reuses the class images.
	code, _, stderr = ib(t, append(args, "--steps", "4", "--format", "diffusers")...)
	if code != 0 {
		t.Fatalf("resume: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "resumed from") || !strings.Contains(stderr, "step 4/4") || strings.Contains(stderr, "step 1/4") ||
		!strings.Contains(stderr, "class images: step 2/2 (100%)\n") {
		t.Errorf("resume: stderr\n%s", stderr)
	}
	checkLoRAFile(t, out, 4)

	// ib generate applies it, weighted, with a second LoRA.
	code, stdout, stderr = ib(t, "generate", "--model", model, "--lora", out+":0.8", "--lora", filepath.Join(fx, "lora", "lora_kohya.safetensors:0.5"),
		"--prompt", "a sks red dog", "--steps", "2", "--seed", "3", "--width", "64", "--height", "64", "--out", dir)
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "lora "+out+" (diffusers): 128 U-Net") || !strings.Contains(stderr, "x0.8") || !strings.Contains(stderr, "x0.5") {
		t.Errorf("generate: stderr\n%s", stderr)
	}
	if _, err := os.Stat(strings.TrimSpace(stdout)); err != nil {
		t.Error(err)
	}
}

func checkLoRAFile(t *testing.T, path string, steps int) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := lora.ParseMeta(f.Metadata)
	if m.Identifier != "sks" || m.ClassNoun != "dog" || m.Description != "red" || m.Steps != steps || len(m.BaseModelHash) != 64 ||
		f.Metadata[lora.KeyRank] != "4" || f.Metadata[lora.KeyAlpha] != "4" {
		t.Errorf("metadata %v", f.Metadata)
	}
	if n := len(f.Names()); n != 128*3 && n != 128*2 {
		t.Errorf("%d tensors", n)
	}
}

// TestPersonalize_full fine-tunes the whole tiny U-Net for 2 steps without
// prior preservation and writes a single-file checkpoint that ib generate
// loads.
func TestPersonalize_full(t *testing.T) {
	needGPU(t)
	fx := fixtures(t)
	model := filepath.Join(fx, "diffusers")
	dir := t.TempDir()
	out := filepath.Join(dir, "full.safetensors")
	code, _, stderr := ib(t, "personalize", "--model", model, "--images", subjectFolder(t), "--class", "dog", "--mode", "full",
		"--no-prior", "--resolution", "64", "--steps", "2", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "full training at 64 px") || !strings.Contains(stderr, "step 2/2") {
		t.Errorf("stderr\n%s", stderr)
	}
	code, _, stderr = ib(t, "generate", "--model", out, "--config", model, "--prompt", "a sks dog", "--steps", "1", "--width", "64", "--height", "64", "--out", dir)
	if code != 0 {
		t.Fatalf("generate from the fine-tune: exit %d: %s", code, stderr)
	}
	// Usage errors.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"personalize", "--model", model, "--images", dir, "--out", out}, "--class is required"},
		{[]string{"personalize", "--model", model, "--images", dir, "--class", "dog", "--out", out, "--mode", "half"}, `--mode "half"`},
		{[]string{"personalize", "--model", model, "--images", dir, "--class", "dog", "--out", out, "--format", "peft"}, `--format "peft"`},
		{[]string{"personalize", "--model", model, "--images", dir, "--class", "dog", "--out", out, "--mode", "full", "--f16-weights"}, "drop --f16-weights"},
		{[]string{"personalize", "--model", model, "--images", dir, "--class", "dog", "--out", out, "--resolution", "100"}, "resolution 100"},
	} {
		code, _, stderr := ib(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args[5:], code, stderr, c.want)
		}
	}
}
